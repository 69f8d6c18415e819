-- A step failed for good: record it once. Returns {tool, seconds of the attempt that
-- ended ('' if none was running)} if recorded (for the metrics), 0 if already final.
-- KEYS: run, steps, events.  ARGV: maxlen, step, error json, worker
local step = ARGV[2]
if gone(KEYS[1]) then return 0 end
local before = redis.call('HMGET', KEYS[2], step .. '.status', step .. '.tool',
                          step .. '.attempt_started_at')
if is_final(before[1]) then return 0 end
local took = ''
if before[1] == 'running' then took = since(before[3]) end
redis.call('HSET', KEYS[2], step .. '.status', 'failed', step .. '.finished_at', now(),
           step .. '.error', ARGV[3], step .. '.worker', ARGV[4])
event(KEYS[3], 'step.finished', step, 'failed', ARGV[3])
return {before[2] or '', took}
