-- An attempt failed and the step will be retried: back to pending, with the error.
-- Returns 1, or 0 if the step is already final (a duplicate attempt: do not retry).
-- KEYS: steps, events.  ARGV: maxlen, step, error json
local step = ARGV[2]
if is_final(redis.call('HGET', KEYS[1], step .. '.status')) then return 0 end
redis.call('HSET', KEYS[1], step .. '.status', 'pending', step .. '.error', ARGV[3])
event(KEYS[2], 'step.retrying', step, 'pending', ARGV[3])
return 1
