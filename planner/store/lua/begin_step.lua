-- A worker is about to run a step: count the attempt and mark it running. The message's
-- plan version need not be the current one: a step kept by a replan runs under the
-- version that holds it now, which this returns.
-- A running step holds a lease (KEYS[5], renewed by its worker): a second message for it
-- is refused while the lease is live ('busy'; an agent step also while its tool calls run
-- or wait, lib.lua's `calls_at_work`), and takes the step over once it expired
-- (its worker died; the lost attempt counted already, and is now taken for lost: a late
-- result of it is superseded). A step that is not running but still holds a live lease
-- waits for it too: an attempt of the run before a `retry` still runs (its run was
-- cancelled), and the tool must not run twice at once.
-- Attempts keep counting across retries of the run; `max_attempts` bounds those made
-- since the last one (the step's `base`: the attempts made before it).
-- KEYS: run, steps, events, deps, leases, outputs.
-- ARGV: maxlen, step, version, worker, max_attempts, lease seconds, task id ('' if unknown),
--       then the steps whose outputs the step reads (its `$ref`s in the message's version)
-- Returns {'run', attempt, version, seconds past its due time, queue, attempts since the
--          run's last retry, output JSON of each step asked for (nil if none)}   run the
--          tool (as this plan version defines it); the 4th and 5th are for the metrics
--       | {'done', step status, version}   final already: recover what follows from it
--       | {'waiting', '', version}   not ready in the current version: someone else sends it
--       | {'exhausted', attempts made, version} | {'inactive', run status, ''}
--       | {'busy', seconds the lease has left, version}   running elsewhere, alive
local step, worker, max_attempts = ARGV[2], ARGV[4], tonumber(ARGV[5])
local run = redis.call('HMGET', KEYS[1], 'status', 'version', 'ending')
if run[1] ~= 'running' or run[3] then
  -- Paused (or stopping): the step is sent again when the run goes on.
  if run[1] == 'paused' then redis.call('HDEL', KEYS[2], step .. '.dispatched') end
  return {'inactive', run[1] or 'missing', ''}
end
local version = run[2]
local waiting = redis.call('HGET', KEYS[4], step)
if not waiting then return {'inactive', 'not in plan version ' .. version, ''} end
-- The step's fields this reads, in one call: 1 status, 2 due, 3 queue, 4 base,
-- 5 attempts, 6 history, 7 started_at.
local f = redis.call('HMGET', KEYS[2], step .. '.status', step .. '.due', step .. '.queue',
                     step .. '.base', step .. '.attempts', step .. '.history',
                     step .. '.started_at')
local status = f[1]
if is_final(status) then return {'done', status, version} end
local lease = tonumber(redis.call('HGET', KEYS[5], step) or '0')
if status == 'running' then
  if lease > now_s() then return {'busy', tostring(lease - now_s()), version} end
  -- An agent step between hops: its step lease lapsed, its calls hold it (lib.lua).
  local calls = calls_at_work(KEYS[2], KEYS[5], step, tonumber(ARGV[6]))
  if calls then return {'busy', calls, version} end
elseif tonumber(waiting) > 0 then
  redis.call('HDEL', KEYS[2], step .. '.dispatched')
  return {'waiting', '', version}
elseif lease > now_s() then
  -- Its message comes back when the lease would lapse: the reconciler expects it then.
  due(KEYS[2], step, lease - now_s() + 1)
  return {'busy', tostring(lease - now_s()), version}
end
local base = tonumber(f[4] or '0')
local attempts = tonumber(f[5] or '0') + 1
if attempts - base > max_attempts then
  -- Not an attempt: the count stays the number of attempts made.
  return {'exhausted', tostring(attempts - 1), version}
end
local history = f[6]
if status == 'running' and status_in(history, attempts - 1) == 'running' then
  history = noted_attempts(KEYS[2], step, attempts - 1, {status = 'lost', finished_at = now()},
                           history)
end
history = noted_attempts(KEYS[2], step, attempts, {status = 'running', worker = worker,
                                                   started_at = now(), task = ARGV[7] or ''},
                         history)
-- One write of what begins (lib.lua's live_task: the task is the step's live one).
local fields = {step .. '.attempts', tostring(attempts), step .. '.status', 'running',
                step .. '.worker', worker, step .. '.attempt_started_at', now(),
                step .. '.history', history}
if ARGV[7] and ARGV[7] ~= '' then
  table.insert(fields, step .. '.task')
  table.insert(fields, ARGV[7])
end
if not f[7] then
  table.insert(fields, step .. '.started_at')
  table.insert(fields, now())
end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('HSET', KEYS[5], step, string.format('%.6f', now_s() + tonumber(ARGV[6])))
expire_with(KEYS[5], KEYS[1])
event(KEYS[3], 'step.started', step, 'running', tostring(attempts))
local wait = ''
if f[2] then wait = string.format('%.6f', math.max(0, now_s() - tonumber(f[2]))) end
local reply = {'run', tostring(attempts), version, wait, f[3] or '',
               tostring(attempts - base)}
-- The inputs, read in the same call (KEYS[6]: outputs); false (nil to the caller) if none.
for i = 8, #ARGV do table.insert(reply, redis.call('HGET', KEYS[6], ARGV[i])) end
return reply
