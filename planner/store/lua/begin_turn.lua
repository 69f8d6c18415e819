-- A worker is about to make turn t of an agent step's conversation (one model call).
-- Turn boundaries are where a cancelled, budget-stopped or paused run stops its agents,
-- and where a turn whose worker died is taken over.
-- KEYS: run, steps, events, agent, leases.
-- ARGV: maxlen, step, conv, turn, worker, lease seconds, task id, attempt ('' = the
--       step's current one; turn 0 runs under the step's own task and gives its attempt)
-- Returns the first that applies:
--   {'inactive', why}   the run is not running or is ending, the step is not running,
--                       `conv` is not its conversation, or `attempt` not its attempt
--   {'early'}           turn t-1 is not recorded, or some of its calls have no result
--   {'done', kind}      turn t is recorded already
--   {'busy', seconds}   turn t is being made under another live holder (the step lease)
--   {'exhausted', tries}  begun MAX_TRIES times already (workers died making it)
--   {'run', attempt, version, tries}   make it: the turn is `thinking` under this task
-- Every begin counts, whoever makes it: the same task id comes back both for a model retry
-- (Celery's retry: up to 5, planner.engine.outcomes.MODEL_TASK_RETRIES, after a first try
-- in the step's own task) and for a broker redelivery after its worker died, which this
-- bound stops from looping. So: those 7, and 3 workers lost.
local MAX_TRIES = 10
local step, conv, t = ARGV[2], ARGV[3], tonumber(ARGV[4])
local worker, lease_s, task, attempt = ARGV[5], tonumber(ARGV[6]), ARGV[7], ARGV[8]
local why = agent_inactive(KEYS[1], KEYS[2], step, conv)
if why then return {'inactive', why} end
local attempts = redis.call('HGET', KEYS[2], step .. '.attempts') or '0'
if attempt ~= '' and attempt ~= attempts then
  return {'inactive', 'attempt ' .. attempt .. ' is not the current one (' .. attempts .. ')'}
end
local prefix = step .. '|' .. conv
if t > 0 then
  local before = agent_get(KEYS[4], prefix .. '|' .. (t - 1))
  if not before or before.status ~= 'done' then return {'early'} end
  if tonumber(redis.call('HGET', KEYS[4], prefix .. '|' .. (t - 1) .. '|left') or '0') > 0 then
    return {'early'}
  end
  if before.kind == 'final' or before.kind == 'invalid' or before.kind == 'max_turns' then
    return {'inactive', 'turn ' .. (t - 1) .. ' ended the conversation (' .. before.kind .. ')'}
  end
end
local field = prefix .. '|' .. t
local rec = agent_get(KEYS[4], field)
if rec and rec.status == 'done' then return {'done', rec.kind} end
local lease = tonumber(redis.call('HGET', KEYS[5], step) or '0')
if rec then
  -- Being made: taken over only from a holder that is gone. Celery's retry of the same
  -- task keeps its id; a later attempt of the step re-drove it; or the lease lapsed.
  local mine = rec.task == task or tonumber(rec.attempt or '0') < tonumber(attempts)
  if not mine and lease > now_s() then
    return {'busy', string.format('%.6f', lease - now_s())}
  end
  if tonumber(rec.tries or 0) >= MAX_TRIES then return {'exhausted', tostring(rec.tries)} end
else
  rec = {turn = t, started_at = now(), tries = 0}
  -- A new conversation: what an earlier one left due is not this one's.
  if t == 0 then redis.call('HDEL', KEYS[2], step .. '.calls_due') end
end
rec.status = 'thinking'
rec.kind = 'thinking'
rec.tries = tonumber(rec.tries or 0) + 1
rec.attempt = tonumber(attempts)
rec.task = task
rec.worker = worker
agent_put(KEYS[4], KEYS[1], field, rec)
redis.call('HSET', KEYS[5], step, string.format('%.6f', now_s() + lease_s))
expire_with(KEYS[5], KEYS[1])
event(KEYS[3], 'agent.turn', step, 'thinking', cjson.encode({turn = t, tries = rec.tries}))
return {'run', attempts, redis.call('HGET', KEYS[1], 'version') or '0', tostring(rec.tries)}
