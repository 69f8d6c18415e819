-- Tool call i of turn t of an agent step ended: its result (succeeded: the output;
-- failed: the error) is recorded once, or it waits for a retry (pending again, due after
-- the delay). Fenced by the call's attempt as steps are (lib.lua's `fenced`): a report
-- from an attempt that is not the running one is noted on the call's record and changes
-- nothing else. The result that leaves no call of the turn without one is `last`: its
-- caller publishes the next turn, if the run and the step still go on.
-- KEYS: run, steps, events, agent, leases.
-- ARGV: maxlen, step, conv, turn, index, attempt ('' = the engine decides), outcome
--       (succeeded|failed|retry), value json (the output, or an error record), delay
--       seconds (retry), queue (retry), handoff seconds (last)
-- Returns {'duplicate'} (it has a result) | {'superseded'} (not the running attempt, or
--         no such call)
--       | {'retry', took}   pending again, due after the delay
--       | {'ok', left, took}   recorded; `left` calls of the turn have no result yet
--       | {'last', version, took}   recorded, the turn's last: publish the next turn
--       | {'recorded', took}   the turn's last, but the run or the step stopped (or this
--                            is not its conversation any more): nothing follows
-- took: seconds this attempt ran ('' if none was running), for the metrics.
local step, conv, t, i = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local attempt, outcome, value = ARGV[6], ARGV[7], ARGV[8]
local prefix = step .. '|' .. conv
local field = prefix .. '|' .. t .. '|' .. i
local call = agent_get(KEYS[4], field)
if not call then return {'superseded'} end
if call.status == 'succeeded' or call.status == 'failed' or call.status == 'refused' then
  return {'duplicate'}
end
if attempt ~= '' and (call.status ~= 'running' or tostring(call.attempts) ~= attempt) then
  local late = call.late or {}
  table.insert(late, {attempt = tonumber(attempt), outcome = outcome, at = now()})
  call.late = late
  agent_put(KEYS[4], KEYS[1], field, call)
  return {'superseded'}
end
local took = ''
if call.status == 'running' then took = since(call.began_at) end
redis.call('HDEL', KEYS[5], call_lease(step, t, i))
local extra = {}
if took ~= '' then extra.took_s = tonumber(took) end
if outcome == 'retry' then
  call.status = 'pending'
  call.error = value
  agent_put(KEYS[4], KEYS[1], field, call)
  call_due(KEYS[2], step, t .. '.' .. i, ARGV[10], tonumber(ARGV[9]) or 0)
  extra.error = error_line(value)
  call_event(KEYS[3], step, 'retrying', t, call, extra)
  return {'retry', took}
end
if outcome == 'succeeded' then
  call.status = 'succeeded'
  call.output = value
  call.error = nil
else
  call.status = 'failed'
  call.error = value
  extra.error = error_line(value)
end
call.finished_at = now()
agent_put(KEYS[4], KEYS[1], field, call)
call_due(KEYS[2], step, t .. '.' .. i, nil)
call_event(KEYS[3], step, call.status, t, call, extra)
local left = redis.call('HINCRBY', KEYS[4], prefix .. '|' .. t .. '|left', -1)
if left > 0 then return {'ok', tostring(left), took} end
if agent_inactive(KEYS[1], KEYS[2], step, conv) then return {'recorded', took} end
redis.call('HSET', KEYS[5], step, string.format('%.6f', now_s() + tonumber(ARGV[11])))
expire_with(KEYS[5], KEYS[1])
return {'last', redis.call('HGET', KEYS[1], 'version') or '0', took}
