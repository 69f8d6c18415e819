-- A step failed for good: record it once. Returns 1 if recorded, 0 if already final.
-- KEYS: run, steps, events.  ARGV: maxlen, step, error json, worker
local step = ARGV[2]
if gone(KEYS[1]) then return 0 end
if is_final(redis.call('HGET', KEYS[2], step .. '.status')) then return 0 end
redis.call('HSET', KEYS[2], step .. '.status', 'failed', step .. '.finished_at', now(),
           step .. '.error', ARGV[3], step .. '.worker', ARGV[4])
event(KEYS[3], 'step.finished', step, 'failed', ARGV[3])
return 1
