-- A step succeeded (or was skipped): record it once, store its output, count down its
-- dependents and the run's remaining steps. A duplicate finish changes nothing.
-- KEYS: run, steps, events, outputs, deps.
-- ARGV: maxlen, step, status (succeeded|skipped), output json, error json ('' for none),
--       worker, ttl, dependents...
-- Returns {'duplicate'} | {'inactive'} | {'ok', remaining, ready dependents...}
local step, status, output, err, worker, ttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
                                               tonumber(ARGV[7])
if is_final(redis.call('HGET', KEYS[2], step .. '.status')) then return {'duplicate'} end
redis.call('HSET', KEYS[2], step .. '.status', status, step .. '.finished_at', now(),
           step .. '.worker', worker)
if err ~= '' then redis.call('HSET', KEYS[2], step .. '.error', err) end
redis.call('HSET', KEYS[4], step, output)
if redis.call('TTL', KEYS[4]) < 0 then redis.call('EXPIRE', KEYS[4], ttl) end
event(KEYS[3], 'step.finished', step, status, err)
local result = {'ok', ''}
for i = 8, #ARGV do
  if redis.call('HINCRBY', KEYS[5], ARGV[i], -1) == 0 then table.insert(result, ARGV[i]) end
end
local remaining = redis.call('HINCRBY', KEYS[1], 'remaining', -1)
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return {'inactive'} end
result[2] = tostring(remaining)
return result
