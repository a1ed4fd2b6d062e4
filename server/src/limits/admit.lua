-- Admission on Redis: `admission::decide` (admission.rs, beside this file), line for line, then
-- its effects, in one atomic step. Integer arithmetic stays below 2^53 (see MAX_OUTPUT_TOKENS).
-- KEYS: key leases (zset), window (hash), then one hash per cost counter (s = spent,
-- r = reserved). ARGV: lease id, concurrency limit, lease ttl ms, window ms (0 = none), max
-- requests, max tokens, max window cost, costed (1/0), input nanos, output nanos per 1000
-- tokens, max output, min output, then one limit per counter, then the keys version key and the
-- version of the request's key copy ('' = not checked).
-- Replies: {'ok', reserve, window start, output limit (-1 = unchanged)} |
-- {'refused', what, current, limit, reset ms, needed} (what: a counter index for costs) | {'keys'}.
local kv = ARGV[#ARGV]
if kv ~= '' and (redis.call('GET', ARGV[#ARGV - 1]) or '0') ~= kv then return {'keys'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local conc, lease_ttl, win = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local maxreq, maxtok, maxcost = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local costed = ARGV[8] == '1'
local input, per_ktok = tonumber(ARGV[9]), tonumber(ARGV[10])
local max_out, min_out = tonumber(ARGV[11]), tonumber(ARGV[12])
local n = #KEYS - 2

local function idiv(a, b) return (a - a % b) / b end
-- ceil(tokens * per_ktok / 1000)
local function out_cost(tokens) return idiv(tokens * per_ktok + 999, 1000) end
-- floor(budget * 1000 / per_ktok), without leaving exact integers
local function tokens_within(budget)
  if per_ktok == 0 then return max_out end
  return idiv(budget, per_ktok) * 1000 + idiv((budget % per_ktok) * 1000, per_ktok)
end

if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  local held = redis.call('ZCARD', KEYS[1])
  if held >= conc then return {'refused', 'concurrency', held, conc, 0, 0} end
end
local wstart, wreq, wtok, wcost, wrc, wreset = 0, 0, 0, 0, 0, false
if win > 0 then
  local w = redis.call('HMGET', KEYS[2], 'start', 'req', 'tok', 'cost', 'rc')
  wstart = tonumber(w[1] or '0') or 0
  wreq, wtok = tonumber(w[2] or '0') or 0, tonumber(w[3] or '0') or 0
  wcost, wrc = tonumber(w[4] or '0') or 0, tonumber(w[5] or '0') or 0
  if now - wstart >= win then wstart, wreq, wtok, wcost, wrc, wreset = now, 0, 0, 0, 0, true end
  if maxreq > 0 and wreq >= maxreq then return {'refused', 'window_requests', wreq, maxreq, wstart + win, 0} end
  if maxtok > 0 and wtok >= maxtok then return {'refused', 'window_tokens', wtok, maxtok, wstart + win, 0} end
end
local reserve, out_limit = 0, -1
if costed then
  local room, bind, bused, blimit = nil, nil, 0, 0
  if win > 0 and maxcost > 0 then
    local used = wcost + wrc
    local r = maxcost - used
    if r < 0 then r = 0 end
    room, bind, bused, blimit = r, 'window_cost', used, maxcost
  end
  for i = 1, n do
    local c = redis.call('HMGET', KEYS[2 + i], 's', 'r')
    local used = (tonumber(c[1] or '0') or 0) + (tonumber(c[2] or '0') or 0)
    local limit = tonumber(ARGV[12 + i])
    local r = limit - used
    if r < 0 then r = 0 end
    if room == nil or r < room then room, bind, bused, blimit = r, tostring(i - 1), used, limit end
  end
  if room ~= nil then
    local worst = input + out_cost(max_out)
    if worst <= room then
      reserve = worst
    else
      local minimum = min_out
      if max_out < minimum then minimum = max_out end
      local needed = input + out_cost(minimum)
      if needed > room then
        local reset = 0
        if win > 0 then reset = wstart + win end
        return {'refused', bind, bused, blimit, reset, needed}
      end
      local fits = tokens_within(room - input)
      if fits < minimum then fits = minimum end
      if fits > max_out then fits = max_out end
      reserve, out_limit = input + out_cost(fits), fits
    end
  end
end
if conc > 0 then
  redis.call('ZADD', KEYS[1], now + lease_ttl, ARGV[1])
  redis.call('PEXPIRE', KEYS[1], lease_ttl)
end
if win > 0 then
  if wreset then
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[2], 'start', now)
  end
  redis.call('HINCRBY', KEYS[2], 'req', 1)
  if reserve > 0 then redis.call('HINCRBY', KEYS[2], 'rc', reserve) end
  redis.call('PEXPIRE', KEYS[2], win)
end
if reserve > 0 then
  for i = 1, n do redis.call('HINCRBY', KEYS[2 + i], 'r', reserve) end
end
return {'ok', reserve, wstart, out_limit}
