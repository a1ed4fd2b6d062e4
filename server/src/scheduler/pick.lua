-- The account pick on Redis: `pick::decide` (pick.rs, beside this file), rule for rule, then
-- its effects (slot, stamp, sticky mapping), in one atomic step. A candidate's rest and slots
-- are read when the rule reaches it.
-- ARGV: prefix, known accounts version, sticky key ('' = no session), sticky ttl s, renew-below
-- ms, family ('' = none), lease id, lease ttl ms, n, then n × (id, priority, max concurrency),
-- then the keys version of the request's key copy ('' = not checked).
-- Replies: {'ok', id, sticky hit 1/0} | {'none', id, 'rest', cooldown json} | {'none', id, 'full'}
-- | {'none'} | {'stale'} | {'keys'}.
local p = ARGV[1]
local kv = ARGV[#ARGV]
if kv ~= '' and (redis.call('GET', p .. 'keys:version') or '0') ~= kv then return {'keys'} end
if (redis.call('GET', p .. 'accounts:version') or '0') ~= ARGV[2] then return {'stale'} end
local sticky, sticky_ttl, renew_below = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local family, lease, lease_ttl = ARGV[6], ARGV[7], tonumber(ARGV[8])
local n = tonumber(ARGV[9])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids, prio, maxc = {}, {}, {}
for i = 1, n do
  local b = 9 + (i - 1) * 3
  ids[i] = ARGV[b + 1]; prio[i] = tonumber(ARGV[b + 2]); maxc[i] = tonumber(ARGV[b + 3])
end
-- Pick stamps: each account's last pick, and under '' the newest of all.
local stamps = p .. 'pick:last'
local lu = redis.call('HMGET', stamps, '', unpack(ids))
local stamp = math.max(now, (tonumber(lu[1]) or 0) + 1)
local last = {}
for i = 1, n do last[i] = tonumber(lu[i + 1]) or 0 end

local first_refusal = nil
-- Whether candidate i neither rests nor has all its slots busy; the first refusal is kept.
local function free(i)
  local c = redis.call('GET', p .. 'cool:' .. ids[i])
  if not c and family ~= '' then c = redis.call('GET', p .. 'cool:' .. ids[i] .. ':' .. family) end
  if c then
    if not first_refusal then first_refusal = {'none', ids[i], 'rest', c} end
    return false
  end
  if maxc[i] > 0 then
    local k = p .. 'lease:acct:' .. ids[i]
    redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
    if redis.call('ZCARD', k) >= maxc[i] then
      if not first_refusal then first_refusal = {'none', ids[i], 'full'} end
      return false
    end
  end
  return true
end
-- The choice's effects: its slot taken, its pick stamped (and its last use, for the pages).
local function take(i)
  if maxc[i] > 0 then
    local k = p .. 'lease:acct:' .. ids[i]
    redis.call('ZADD', k, now + lease_ttl, lease)
    redis.call('PEXPIRE', k, lease_ttl)
  end
  redis.call('HSET', stamps, ids[i], stamp, '', stamp)
  redis.call('HSET', p .. 'lastused:accounts', ids[i], now)
end

local sk = p .. 'sticky:' .. sticky
local drop_sticky = false
if sticky ~= '' then
  local sid = redis.call('GET', sk)
  if sid then
    local at = nil
    for i = 1, n do
      if ids[i] == sid then at = i; break end
    end
    if at and free(at) then
      take(at)
      local left = redis.call('PTTL', sk)
      if left >= 0 and left < renew_below then redis.call('EXPIRE', sk, sticky_ttl) end
      return {'ok', sid, '1'}
    end
    drop_sticky = true
  end
end
local order = {}
for i = 1, n do order[i] = i end
table.sort(order, function(a, b)
  if prio[a] ~= prio[b] then return prio[a] < prio[b] end
  if last[a] ~= last[b] then return last[a] < last[b] end
  return a < b
end)
for _, i in ipairs(order) do
  if free(i) then
    take(i)
    if sticky ~= '' then redis.call('SET', sk, ids[i], 'EX', sticky_ttl) end
    return {'ok', ids[i], '0'}
  end
end
if drop_sticky then redis.call('DEL', sk) end
return first_refusal or {'none'}
