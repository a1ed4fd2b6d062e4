-- Settlement on Redis: the request's lease released and its reservation replaced by what it
-- cost, in one atomic step. KEYS: as admit.lua (key leases, window, cost counters). ARGV: lease
-- id ('' = none), reserved, actual, tokens, window start (0 = no window), then one TTL in
-- seconds per counter (0 = kept for ever).
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
local reserved, actual, tokens, wstart = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
-- A settlement never touches a newer window than the one it was admitted in.
if wstart > 0 and tonumber(redis.call('HGET', KEYS[2], 'start') or '-1') == wstart then
  if reserved > 0 and redis.call('HINCRBY', KEYS[2], 'rc', -reserved) < 0 then redis.call('HSET', KEYS[2], 'rc', 0) end
  if tokens > 0 then redis.call('HINCRBY', KEYS[2], 'tok', tokens) end
  if actual > 0 then redis.call('HINCRBY', KEYS[2], 'cost', actual) end
end
for i = 3, #KEYS do
  if actual > 0 then redis.call('HINCRBY', KEYS[i], 's', actual) end
  if reserved > 0 and redis.call('HINCRBY', KEYS[i], 'r', -reserved) < 0 then redis.call('HSET', KEYS[i], 'r', 0) end
  local ttl = tonumber(ARGV[3 + i])
  if ttl > 0 then redis.call('EXPIRE', KEYS[i], ttl) end
end
return 1
