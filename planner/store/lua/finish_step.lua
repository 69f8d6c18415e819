-- A step succeeded (or was skipped): record it once, store its output, and, if the current
-- plan version holds it, count down its dependents in that version's edges and the run's
-- remaining steps. A duplicate finish changes nothing.
-- KEYS: run, steps, events, outputs, deps, dependents.
-- ARGV: maxlen, step, status (succeeded|skipped), output json, error json ('' for none),
--       worker, ttl, hold ('1': a checkpoint: its dependents wait for the review)
-- Returns {'duplicate'} | {'inactive'} | {'detached'} (recorded; no version holds it)
--       | {'held', remaining, version} (a checkpoint with dependents: review it)
--       | {'ok', remaining, version, ready dependents...}
local step, status, output, err, worker, ttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
                                               tonumber(ARGV[7])
if gone(KEYS[1]) then return {'inactive'} end
if is_final(redis.call('HGET', KEYS[2], step .. '.status')) then return {'duplicate'} end
redis.call('HSET', KEYS[2], step .. '.status', status, step .. '.finished_at', now(),
           step .. '.worker', worker)
if err ~= '' then redis.call('HSET', KEYS[2], step .. '.error', err) end
redis.call('HSET', KEYS[4], step, output)
if redis.call('TTL', KEYS[4]) < 0 then redis.call('EXPIRE', KEYS[4], ttl) end
event(KEYS[3], 'step.finished', step, status, err)
if redis.call('HEXISTS', KEYS[5], step) == 0 then return {'detached'} end
local run = redis.call('HMGET', KEYS[1], 'status', 'version')
local result = {'ok', '', run[2]}
local downs = redis.call('HGET', KEYS[6], step)
if downs and ARGV[8] == '1' and status == 'succeeded' then
  -- Its dependents are not counted down until the review lets them go (release_step).
  redis.call('HSET', KEYS[2], step .. '.held', run[2])
  local remaining = redis.call('HINCRBY', KEYS[1], 'remaining', -1)
  if run[1] ~= 'running' then return {'inactive'} end
  return {'held', tostring(remaining), run[2]}
end
if downs then
  for _, down in ipairs(cjson.decode(downs)) do
    if redis.call('HINCRBY', KEYS[5], down, -1) == 0 then
      table.insert(result, down)
      due(KEYS[2], down)
    end
  end
end
local remaining = redis.call('HINCRBY', KEYS[1], 'remaining', -1)
if run[1] ~= 'running' then return {'inactive'} end
result[2] = tostring(remaining)
return result
