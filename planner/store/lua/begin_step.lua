-- A worker is about to run a step: count the attempt and mark it running, unless the run
-- is over, the plan version was replaced, the step is final, or its attempts are spent.
-- KEYS: run, steps, events.  ARGV: maxlen, step, version, worker, max_attempts
-- Returns {'run', attempt} | {'inactive', run status} | {'done', step status}
--       | {'exhausted', attempts made}
local step, version, worker, max_attempts = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local run = redis.call('HMGET', KEYS[1], 'status', 'version')
if run[1] ~= 'running' or run[2] ~= version then return {'inactive', run[1] or 'missing'} end
local status = redis.call('HGET', KEYS[2], step .. '.status')
if is_final(status) then return {'done', status} end
local attempts = redis.call('HINCRBY', KEYS[2], step .. '.attempts', 1)
if attempts > max_attempts then return {'exhausted', tostring(attempts - 1)} end
redis.call('HSET', KEYS[2], step .. '.status', 'running', step .. '.worker', worker,
           step .. '.attempt_started_at', now())
redis.call('HSETNX', KEYS[2], step .. '.started_at', now())
event(KEYS[3], 'step.started', step, 'running', tostring(attempts))
return {'run', tostring(attempts)}
