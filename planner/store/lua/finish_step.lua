-- A step succeeded (or was skipped): record it once, store its output, and, if the current
-- plan version holds it, count down its dependents in that version's edges and the run's
-- remaining steps. A duplicate finish changes nothing, and neither does one from an
-- attempt that is not the current one (`fenced` in lib.lua: recorded as superseded).
-- KEYS: run, steps, events, outputs, deps, dependents, leases.
-- ARGV: maxlen, step, status (succeeded|skipped), output json, error json ('' for none),
--       worker, ttl, hold ('1': a checkpoint: its dependents wait for the review),
--       attempt ('' if the engine decides, not an attempt), the attempt's outcome
--       (succeeded|failed|revoked: a skip is a failed attempt),
--       the run's id and a JSON object {dependent: queue} ('' for neither): the caller
--       publishes the ready dependents' first messages right after this; they are noted
--       here, as `mark_dispatched` would after the publish, saving its round trip. Noted
--       'p' (to be published), not '1': a delivery that recovers this finish (its worker
--       died before publishing) publishes them again, as it does a step never noted.
-- Returns {'duplicate'} | {'superseded'} | {'inactive'} (not recorded: the run's record is
--         gone)
--       | {'recorded', tool, seconds} (recorded, but the run is not running: nothing follows)
--       | {'detached', tool, seconds} (recorded; no version holds it)
--       | {'held', remaining, version, tool, seconds} (a checkpoint with dependents: review it)
--       | {'ok', remaining, version, tool, seconds, ready dependents...}
-- tool and seconds (of the attempt that ended, '' if none was running) are for the metrics.
local step, status, output, err, worker, ttl = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
                                               tonumber(ARGV[7])
-- The run's status and version (read now: nothing here changes them); no status: gone.
local run = redis.call('HMGET', KEYS[1], 'status', 'version')
if not run[1] and gone(KEYS[1]) then return {'inactive'} end
-- The step's fields, in one call: 1 status, 2 tool, 3 attempt_started_at, 4 attempts,
-- 5 history.
local before = redis.call('HMGET', KEYS[2], step .. '.status', step .. '.tool',
                          step .. '.attempt_started_at', step .. '.attempts',
                          step .. '.history')
local fence = fenced(KEYS[2], KEYS[3], KEYS[7], step, ARGV[9], ARGV[10], err,
                     {before[1], before[4]})
if fence then return {fence} end
if is_final(before[1]) then return {'duplicate'} end
local tool, took = before[2] or '', ''
if before[1] == 'running' then took = since(before[3]) end
settle(KEYS[2], KEYS[7], step, before[1], before[4], ARGV[10], err, before[5])
redis.call('HSET', KEYS[2], step .. '.status', status, step .. '.finished_at', now(),
           step .. '.worker', worker)
if err ~= '' then redis.call('HSET', KEYS[2], step .. '.error', err) end
redis.call('HSET', KEYS[4], step, output)
if redis.call('TTL', KEYS[4]) < 0 then redis.call('EXPIRE', KEYS[4], ttl) end
event(KEYS[3], 'step.finished', step, status, err)
if redis.call('HEXISTS', KEYS[5], step) == 0 then return {'detached', tool, took} end
local result = {'ok', '', run[2], tool, took}
local downs = redis.call('HGET', KEYS[6], step)
if downs and ARGV[8] == '1' and status == 'succeeded' then
  -- Its dependents are not counted down until the review lets them go (release_step).
  redis.call('HSET', KEYS[2], step .. '.held', run[2])
  local remaining = redis.call('HINCRBY', KEYS[1], 'remaining', -1)
  if run[1] ~= 'running' then return {'recorded', tool, took} end
  return {'held', tostring(remaining), run[2], tool, took}
end
local queues = nil
if ARGV[11] and ARGV[11] ~= '' then queues = cjson.decode(ARGV[12]) end
if downs then
  for _, down in ipairs(cjson.decode(downs)) do
    if redis.call('HINCRBY', KEYS[5], down, -1) == 0 then
      table.insert(result, down)
      due(KEYS[2], down)
      if queues and run[1] == 'running' then
        -- Its first message's id (planner.wire.task_id) is the step's live task now.
        live_task(KEYS[2], down, ARGV[11] .. '.' .. run[2] .. '.' .. down)
        redis.call('HSET', KEYS[2], down .. '.dispatched', 'p')
        if type(queues[down]) == 'string' and queues[down] ~= '' then
          redis.call('HSET', KEYS[2], down .. '.queue', queues[down])
        end
      end
    end
  end
end
local remaining = redis.call('HINCRBY', KEYS[1], 'remaining', -1)
if run[1] ~= 'running' then return {'recorded', tool, took} end
result[2] = tostring(remaining)
return result
