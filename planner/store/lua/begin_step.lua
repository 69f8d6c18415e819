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
local status = redis.call('HGET', KEYS[2], step .. '.status')
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
local queued = redis.call('HMGET', KEYS[2], step .. '.due', step .. '.queue', step .. '.base')
local base = tonumber(queued[3] or '0')
local attempts = redis.call('HINCRBY', KEYS[2], step .. '.attempts', 1)
if attempts - base > max_attempts then
  -- Not an attempt: the count stays the number of attempts made.
  redis.call('HINCRBY', KEYS[2], step .. '.attempts', -1)
  return {'exhausted', tostring(attempts - 1), version}
end
if status == 'running' and attempt_status(KEYS[2], step, attempts - 1) == 'running' then
  note_attempt(KEYS[2], step, attempts - 1, {status = 'lost', finished_at = now()})
end
redis.call('HSET', KEYS[2], step .. '.status', 'running', step .. '.worker', worker,
           step .. '.attempt_started_at', now())
note_attempt(KEYS[2], step, attempts, {status = 'running', worker = worker,
                                       started_at = now(), task = ARGV[7] or ''})
live_task(KEYS[2], step, ARGV[7])
redis.call('HSETNX', KEYS[2], step .. '.started_at', now())
redis.call('HSET', KEYS[5], step, string.format('%.6f', now_s() + tonumber(ARGV[6])))
expire_with(KEYS[5], KEYS[1])
event(KEYS[3], 'step.started', step, 'running', tostring(attempts))
local wait = ''
if queued[1] then wait = string.format('%.6f', math.max(0, now_s() - tonumber(queued[1]))) end
local reply = {'run', tostring(attempts), version, wait, queued[2] or '',
               tostring(attempts - base)}
-- The inputs, read in the same call (KEYS[6]: outputs); false (nil to the caller) if none.
for i = 8, #ARGV do table.insert(reply, redis.call('HGET', KEYS[6], ARGV[i])) end
return reply
