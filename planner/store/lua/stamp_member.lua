-- Add a member to a sorted set of run ids, scored with Redis's clock (the reconciler's
-- watch list, the run index), unless it is there; then trim members older than ARGV[2]
-- seconds if given. A script so the score needs no TIME round trip before it: a submit
-- sends it in the same pipeline as the run's own script.
-- KEYS: the sorted set.  ARGV: member, retention seconds ('' : no trim)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZADD', KEYS[1], 'NX', now, ARGV[1])
if ARGV[2] ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, now - tonumber(ARGV[2]))
end
return tostring(now)
