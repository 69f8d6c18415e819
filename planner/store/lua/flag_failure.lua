-- A step of the current version failed for good under the replan policy: note it as a
-- failure the next replan must handle. A failure that an installed version already handled
-- (the step is no longer in it) is not noted again. Returns 1 if it is waiting for a replan.
-- KEYS: steps, deps, unhandled.  ARGV: maxlen, step
local step = ARGV[2]
if redis.call('HEXISTS', KEYS[2], step) == 0 then return 0 end
if redis.call('HGET', KEYS[1], step .. '.status') ~= 'failed' then return 0 end
redis.call('SADD', KEYS[3], step)
return 1
