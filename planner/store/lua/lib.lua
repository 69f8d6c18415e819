-- Shared by every run-store script: loaded in front of each one (planner/store/scripts.py).
-- Convention: ARGV[1] of every script is the maximum length of the run's events stream.

-- Redis's clock, read once per call of a script: its every time is the same moment (a
-- script runs atomically), and TIME is not asked again for each field that records one.
local clock_read = nil
local function clock()
  if not clock_read then clock_read = redis.call('TIME') end
  return clock_read
end

-- Redis's own clock, "secs.micros": one clock for every worker.
local function now()
  local t = clock()
  return t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end

-- The same clock as a number of seconds, for leases and due times.
local function now_s()
  local t = clock()
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end

-- When a step is expected to start (ready now, or after a retry's delay): the reconciler
-- looks for a step still pending well past it (a message lost, or never published).
local function due(steps, step, delay)
  redis.call('HSET', steps, step .. '.due', string.format('%.6f', now_s() + (delay or 0)))
end

-- A step in one of these states never changes again (the one place this rule is written
-- in Lua; planner/store/records.py FINAL_STEP is the same rule in Python). 'cancelled' (a
-- step its ended run abandoned) is not final: a late result is still recorded.
local function is_final(status)
  return status == 'succeeded' or status == 'skipped' or status == 'failed'
    or status == 'replaced'
end

-- A run whose record expired (or never was): a late message must not recreate its keys,
-- which would then never expire.
local function gone(run_key)
  return redis.call('EXISTS', run_key) == 0
end

-- Seconds since a stored "secs.micros" moment, as a string ('' if there is none): a
-- duration for the metrics (a Lua number would come back to Python as an integer).
local function since(stamp)
  if not stamp then return '' end
  return string.format('%.6f', now_s() - tonumber(stamp))
end

local function event(stream, kind, step, status, data)
  redis.call('XADD', stream, 'MAXLEN', '~', ARGV[1], '*', 'type', kind, 'step', step,
             'status', status, 'ts', now(), 'data', data)
end

-- A key created beside the run's record expires with it. (The key's own TTL first: it
-- has one but the first time, and then the run's is not read.)
local function expire_with(key, run_key)
  if redis.call('TTL', key) >= 0 then return end
  local ttl = redis.call('TTL', run_key)
  if ttl > 0 then redis.call('EXPIRE', key, ttl) end
end

-- A step's attempts, one record each, oldest first (the report's history): a JSON list
-- in the step's `history` field. The record of attempt n is changed by `fields` (made if
-- it is new). The list is written only with a record in it (cjson makes {} of none).
-- `raw`: the field as the caller read it already (false: it has none; nil: not read).
local function noted_attempts(steps, step, n, fields, raw)
  if raw == nil then raw = redis.call('HGET', steps, step .. '.history') end
  local list = raw and cjson.decode(raw) or {}
  local rec
  for _, r in ipairs(list) do
    if tonumber(r.attempt) == n then rec = r end
  end
  if not rec then
    rec = {attempt = n}
    table.insert(list, rec)
  end
  for k, v in pairs(fields) do rec[k] = v end
  return cjson.encode(list)
end

-- The same, written: the history's new text, for a caller that writes it with more.
local function note_attempt(steps, step, n, fields, raw)
  redis.call('HSET', steps, step .. '.history', noted_attempts(steps, step, n, fields, raw))
end

-- The status of attempt n in a history's JSON text (false or nil: none), or nil.
local function status_in(raw, n)
  if not raw then return nil end
  for _, r in ipairs(cjson.decode(raw)) do
    if tonumber(r.attempt) == n then return r.status end
  end
  return nil
end

local function attempt_status(steps, step, n)
  return status_in(redis.call('HGET', steps, step .. '.history'), n)
end

-- An error as a record keeps it: its JSON text (decoding it would turn its empty lists
-- into objects when the record is written back).
local function error_text(err)
  if err == nil or err == '' then return nil end
  return err
end

-- Fencing by attempt number. An outcome reported by attempt `attempt` (a string; '' when
-- the engine decides itself: the reconciler, an errback, a revoke) changes the step only
-- if that attempt is the current one: the last begun, and running (or cancelled with its
-- run: a late result of a cancelled run is still recorded). Any other attempt was
-- superseded (a later one began, it was taken for lost, the step was retried or ended):
-- its outcome is written on its own record and as a `step.superseded` event, and changes
-- nothing else. Returns nil (go on), 'superseded', or 'duplicate' (this attempt's outcome
-- is recorded already: the same report came twice). `known`: {status, attempts} as the
-- caller read them already (nil: read here).
local function fenced(steps, events, leases, step, attempt, outcome, err, known)
  if attempt == nil or attempt == '' then return nil end
  local s = known or redis.call('HMGET', steps, step .. '.status', step .. '.attempts')
  if s[2] == attempt and (s[1] == 'running' or s[1] == 'cancelled') then return nil end
  local n = tonumber(attempt)
  local was = attempt_status(steps, step, n)
  if was == outcome or was == 'superseded' then return 'duplicate' end
  note_attempt(steps, step, n, {status = 'superseded', finished_at = now(),
                                outcome = outcome, error = error_text(err)})
  -- The step's lease is the last begun attempt's: if that is this one and the step no
  -- longer runs it, the lease left was its own (a retry must not wait on it). A lease of a
  -- later attempt is never this one's to drop: that attempt may still run.
  if s[1] ~= 'running' and tonumber(s[2] or '0') == n then redis.call('HDEL', leases, step) end
  event(events, 'step.superseded', step, s[1] or 'pending',
        cjson.encode({attempt = n, current = tonumber(s[2] or '0'), outcome = outcome}))
  return 'superseded'
end

-- The current attempt's outcome is recorded: its record says how it ended, and its lease
-- goes (a retry of the step must not wait for it). A step that is not running nor
-- cancelled has no current attempt: a lease it holds is that of an attempt of a cancelled
-- run that still runs (after a `retry`), and stays until that attempt ends.
-- `raw`: the history as the caller read it (see note_attempt).
local function settle(steps, leases, step, status, attempts, label, err, raw)
  if (status == 'running' or status == 'cancelled') and tonumber(attempts or '0') > 0 then
    redis.call('HDEL', leases, step)
    note_attempt(steps, step, tonumber(attempts), {status = label, finished_at = now(),
                                                   error = error_text(err)}, raw)
  end
end

-- The task id a step lives under now: that of the message last published for it, or of
-- the attempt last begun. A revoke or an errback of any other task concerns a message
-- or an attempt the step no longer runs under (planner.engine.steps.is_current_task).
local function live_task(steps, step, task)
  if task and task ~= '' then redis.call('HSET', steps, step .. '.task', task) end
end

-- Agent steps (begin_turn, record_turn, begin_call, finish_call). A conversation lives in
-- the run's `:agent` hash under `<step>|<conv>|`, where `conv` is the step's `base` when
-- it began (`chordal retry` bumps it: a new conversation). Payloads the model or a tool
-- wrote (content blocks, args, outputs, errors, usage, answers) are kept in the records
-- as JSON text: cjson would turn their empty lists into objects and round their numbers
-- to 14 digits if it decoded and wrote them again.

-- The step's current conversation: its fields' prefix, and its number.
local function agent_prefix(steps, step)
  local conv = redis.call('HGET', steps, step .. '.base') or '0'
  return step .. '|' .. conv, conv
end

local function agent_get(agent, field)
  local raw = redis.call('HGET', agent, field)
  if raw then return cjson.decode(raw) end
  return nil
end

local function agent_put(agent, run_key, field, rec)
  redis.call('HSET', agent, field, cjson.encode(rec))
  expire_with(agent, run_key)
end

-- Why an agent step may not go on (nil: it may): its run is not running (cancelled,
-- stopped at its budget, paused) or is ending, the step is not running, or `conv` is not
-- its current conversation.
local function agent_inactive(run_key, steps, step, conv)
  local run = redis.call('HMGET', run_key, 'status', 'ending')
  if run[1] ~= 'running' then return 'run ' .. (run[1] or 'missing') end
  if run[2] then return 'run ending' end
  local status = redis.call('HGET', steps, step .. '.status') or 'pending'
  if status ~= 'running' then return 'step ' .. status end
  local _, current = agent_prefix(steps, step)
  if current ~= conv then return 'conversation ' .. conv .. ' is not ' .. current end
  return nil
end

-- The step's tool calls published and not begun ("<turn>.<index>" -> {queue, due}), for
-- the reconciler: set one (`queue` given) or drop it (nil).
local function call_due(steps, step, key, queue, delay)
  local raw = redis.call('HGET', steps, step .. '.calls_due')
  local due_map = raw and cjson.decode(raw) or {}
  if queue then
    due_map[key] = {queue, string.format('%.6f', now_s() + (delay or 0))}
  else
    due_map[key] = nil
  end
  if next(due_map) == nil then
    redis.call('HDEL', steps, step .. '.calls_due')
  else
    redis.call('HSET', steps, step .. '.calls_due', cjson.encode(due_map))
  end
end

-- Whether an agent step is still at work on its tool calls while its step lease lapsed
-- (it does, by design, while they run or wait): seconds to wait (a string), or nil. At
-- work: a call of its current conversation holds a live call lease, or a call is
-- published and not begun (`calls_due`: its message is on the way, or waits for its
-- retry's countdown). `begin_step` answers a second message of the step 'busy' then:
-- taking the step over would count an attempt, take the live one for lost and publish its
-- calls again. A call whose message was lost is the reconciler's to find (it reads the
-- queues); its reclaim makes the step pending first, so the re-drive is not kept waiting.
local function calls_at_work(steps, leases, step, lease_s)
  local prefix = '~' .. step .. '|' .. (redis.call('HGET', steps, step .. '.base') or '0')
                 .. '|'
  local t, left = now_s(), nil
  local held = redis.call('HGETALL', leases)
  for j = 1, #held, 2 do
    local until_s = tonumber(held[j + 1]) or 0
    if string.sub(held[j], 1, #prefix) == prefix and until_s > t then
      left = math.max(left or 0, until_s - t)
    end
  end
  if not left and redis.call('HEXISTS', steps, step .. '.calls_due') == 1 then
    left = lease_s
  end
  if left then return string.format('%.6f', left) end
  return nil
end

-- At most n bytes of s, not cutting a UTF-8 character in two.
local function cut(s, n)
  if type(s) ~= 'string' then return nil end
  if #s <= n then return s end
  local i = n
  while i > 0 do
    local b = string.byte(s, i + 1)
    if b < 0x80 or b >= 0xC0 then break end
    i = i - 1
  end
  return string.sub(s, 1, i)
end

-- An error record (JSON text) as an event shows it: "<Type>: <message>", 300 bytes.
local function error_line(err)
  if err == nil or err == '' then return nil end
  local ok, e = pcall(cjson.decode, err)
  if not ok or type(e) ~= 'table' then return cut(err, 300) end
  return cut(tostring(e.type or 'Error') .. ': ' .. tostring(e.message or ''), 300)
end

local function call_event(events, step, status, t, rec, extra)
  local data = {turn = t, index = rec.index, tool = rec.tool, attempt = rec.attempts}
  for k, v in pairs(extra or {}) do data[k] = v end
  event(events, 'agent.tool_call', step, status, cjson.encode(data))
end

-- A call lease's name in `:leases`: the step's calls live beside its own lease. The
-- conversation is in it: a call of a conversation `chordal retry` left behind may still
-- run beside the same call of the new one, and each drops only its own lease.
local function call_lease(step, conv, t, i)
  return '~' .. step .. '|' .. conv .. '|' .. t .. '|' .. i
end
