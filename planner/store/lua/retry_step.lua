-- An attempt failed and the step will be retried: back to pending, with the error.
-- Returns {tool} (for the metrics), or 0 if the step is already final (a duplicate attempt:
-- do not retry), its run abandoned it, or the attempt is not the current one (`fenced`).
-- KEYS: run, steps, events, leases.
-- ARGV: maxlen, step, error json, delay before the retry (s), attempt ('' if the engine
--       decides)
local step = ARGV[2]
if gone(KEYS[1]) then return 0 end
if fenced(KEYS[2], KEYS[3], KEYS[4], step, ARGV[5], 'failed', ARGV[3]) then return 0 end
local before = redis.call('HMGET', KEYS[2], step .. '.status', step .. '.attempts')
if is_final(before[1]) then return 0 end
-- An attempt of a cancelled run failed: its record says so and its lease goes, but the
-- step stays cancelled (nothing retries it unless the run is retried).
settle(KEYS[2], KEYS[4], step, before[1], before[2], 'failed', ARGV[3])
if before[1] == 'cancelled' then return 0 end
redis.call('HSET', KEYS[2], step .. '.status', 'pending', step .. '.error', ARGV[3])
due(KEYS[2], step, tonumber(ARGV[4]))
event(KEYS[3], 'step.retrying', step, 'pending', ARGV[3])
return {redis.call('HGET', KEYS[2], step .. '.tool') or ''}
