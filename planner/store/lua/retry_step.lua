-- An attempt failed and the step will be retried: back to pending, with the error.
-- Returns {tool} (for the metrics), or 0 if the step is already final (a duplicate attempt: do not retry) or its
-- run abandoned it.
-- KEYS: run, steps, events.  ARGV: maxlen, step, error json, delay before the retry (s)
local step = ARGV[2]
if gone(KEYS[1]) then return 0 end
local status = redis.call('HGET', KEYS[2], step .. '.status')
if is_final(status) or status == 'cancelled' then return 0 end
redis.call('HSET', KEYS[2], step .. '.status', 'pending', step .. '.error', ARGV[3])
due(KEYS[2], step, tonumber(ARGV[4]))
event(KEYS[3], 'step.retrying', step, 'pending', ARGV[3])
return {redis.call('HGET', KEYS[2], step .. '.tool') or ''}
