-- A step failed for good: record it once. Returns {tool, seconds of the attempt that
-- ended ('' if none was running)} if recorded (for the metrics), 0 if already final or
-- reported by an attempt that is not the current one (`fenced` in lib.lua).
-- KEYS: run, steps, events, leases.
-- ARGV: maxlen, step, error json, worker, attempt ('' if the engine decides), the
--       attempt's outcome (failed|revoked)
local step = ARGV[2]
if gone(KEYS[1]) then return 0 end
if fenced(KEYS[2], KEYS[3], KEYS[4], step, ARGV[5], ARGV[6], ARGV[3]) then return 0 end
local before = redis.call('HMGET', KEYS[2], step .. '.status', step .. '.tool',
                          step .. '.attempt_started_at', step .. '.attempts')
if is_final(before[1]) then return 0 end
local took = ''
if before[1] == 'running' then took = since(before[3]) end
settle(KEYS[2], KEYS[4], step, before[1], before[4], ARGV[6], ARGV[3])
redis.call('HSET', KEYS[2], step .. '.status', 'failed', step .. '.finished_at', now(),
           step .. '.error', ARGV[3], step .. '.worker', ARGV[4])
event(KEYS[3], 'step.finished', step, 'failed', ARGV[3])
return {before[2] or '', took}
