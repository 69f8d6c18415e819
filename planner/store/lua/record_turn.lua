-- Turn t of an agent step was made: record it, with the tool calls it asked for, at once.
-- Only the task making it records it (begin_turn gave it the turn): a late reporter whose
-- turn was taken over changes nothing. A pending call is due now (the caller publishes
-- it next); a refused one (unknown tool, bad args) has its result already: its error.
-- `left` counts the pending calls, the fan-in counter finish_call counts down.
-- KEYS: run, steps, events, agent, leases.
-- ARGV: maxlen, step, conv, turn, task id, turn json, calls json, handoff seconds
--   turn json: {kind, text, stop_reason, latency_ms, and as JSON text: content, usage,
--               answer, problems}
--   calls json: [{index, id, tool, queue, args (JSON text), error (JSON text: refused)}]
-- Returns {'duplicate', kind} (recorded already) | {'superseded'} (not this task's turn)
--       | {'ok', calls left, active}: active '0' when the run or the step stopped while
--         the model answered (cancelled, budget stop, pause, a new conversation):
--         recorded, and nothing follows from it.
local step, conv, t, task = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local prefix = step .. '|' .. conv
local field = prefix .. '|' .. t
local rec = agent_get(KEYS[4], field)
if not rec or rec.status ~= 'thinking' or rec.task ~= task then
  if rec and rec.status == 'done' then return {'duplicate', rec.kind} end
  return {'superseded'}
end
local made = cjson.decode(ARGV[6])
for k, v in pairs(made) do rec[k] = v end
rec.status = 'done'
rec.finished_at = now()
local calls = cjson.decode(ARGV[7])
local left, summaries = 0, {}
for _, c in ipairs(calls) do
  local call = {index = c.index, id = c.id, tool = c.tool, args = c.args, queue = c.queue,
                attempts = 0}
  local key = t .. '.' .. c.index
  if c.error and c.error ~= cjson.null then
    call.status = 'refused'
    call.error = c.error
    call.finished_at = now()
  else
    call.status = 'pending'
    left = left + 1
    call_due(KEYS[2], step, key, c.queue or '', 0)
  end
  agent_put(KEYS[4], KEYS[1], field .. '|' .. c.index, call)
  table.insert(summaries, cjson.encode({index = c.index, tool = c.tool}))
end
rec.calls = #calls
agent_put(KEYS[4], KEYS[1], field, rec)
redis.call('HSET', KEYS[4], field .. '|left', left, prefix .. '|last', t)
local active = agent_inactive(KEYS[1], KEYS[2], step, conv) == nil
if active then
  -- The hop to the calls or the next turn: no worker holds the step meanwhile.
  redis.call('HSET', KEYS[5], step, string.format('%.6f', now_s() + tonumber(ARGV[8])))
  expire_with(KEYS[5], KEYS[1])
end
local head = cjson.encode({turn = t, text = cut(rec.text, 200), latency_ms = rec.latency_ms})
event(KEYS[3], 'agent.turn', step, rec.kind, string.sub(head, 1, -2) .. ',"calls":['
      .. table.concat(summaries, ',') .. '],"usage":' .. (type(rec.usage) == 'string' and rec.usage or 'null') .. '}')
for _, c in ipairs(calls) do
  if c.error and c.error ~= cjson.null then
    call_event(KEYS[3], step, 'refused', t, {index = c.index, tool = c.tool, attempts = 0},
               {error = error_line(c.error)})
  end
end
return {'ok', tostring(left), active and '1' or '0'}
