-- A key record written and the keys version bumped in one atomic step, optionally only if the
-- record is still what the writer read (compare-and-set). Mirrored by the embedded engine's
-- `write_key` (store/embedded/keys.rs), inside one write transaction.
-- KEYS: the record, the keys version. ARGV: the new record, the record as it was read
-- ('' = any existing record).
-- Replies: 1 written | 0 no such record | -1 changed since it was read (nothing written).
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if ARGV[2] ~= '' and cur ~= ARGV[2] then return -1 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[2])
return 1
