-- One more failed sign-in on each counter KEYS[i] (mirrors `after_failure` in throttle.rs,
-- beside this file).
-- A counter is a hash {n = failures, t = ms of the last failure} that expires ARGV[2] ms
-- after its last failure, so a forgotten counter starts again from 1.
-- ARGV[1]: now (ms since the epoch); ARGV[2]: FORGET_AFTER (ms).
for _, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'n', 1)
  redis.call('HSET', key, 't', ARGV[1])
  redis.call('PEXPIRE', key, ARGV[2])
end
return #KEYS
