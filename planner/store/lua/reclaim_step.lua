-- The reconciler found a running step whose lease expired (its worker died or lost Redis):
-- if it is still that attempt, running, with no live lease, it goes back to pending with
-- the error (the lost attempt counted when it began). Returns 1, or 0 if anything changed
-- since the reconciler looked (it finished, or a new attempt began).
-- KEYS: run, steps, events, leases.  ARGV: maxlen, step, attempt, error json, delay (s)
local step = ARGV[2]
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[2], step .. '.status') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[2], step .. '.attempts') ~= ARGV[3] then return 0 end
if tonumber(redis.call('HGET', KEYS[4], step) or '0') > now_s() then return 0 end
redis.call('HDEL', KEYS[4], step)
-- Taken for lost: a result it may still report is superseded (fenced in lib.lua).
note_attempt(KEYS[2], step, tonumber(ARGV[3]), {status = 'lost', finished_at = now(),
                                                error = error_text(ARGV[4])})
redis.call('HSET', KEYS[2], step .. '.status', 'pending', step .. '.error', ARGV[4],
           step .. '.dispatched', '1')
due(KEYS[2], step, tonumber(ARGV[5]))
event(KEYS[3], 'step.retrying', step, 'pending', ARGV[4])
return 1
