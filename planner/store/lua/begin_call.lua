-- A worker is about to run tool call i of turn t of an agent step: count the attempt and
-- mark the call running under its own lease (`~<step>|<t>|<i>` in `:leases`, renewed by
-- its worker). A call that has a result never runs again.
-- KEYS: run, steps, events, agent, leases.
-- ARGV: maxlen, step, conv, turn, index, worker, max attempts, lease seconds, task id
-- Returns {'inactive', why}   the run is not running or is ending, the step is not
--                             running, `conv` is not its conversation, or no such call
--       | {'done', status, left, next_begun}   it has a result; `left`: the turn's calls
--                             without one; next_begun '1' if turn t+1 began (else the
--                             caller publishes it when `left` is 0: its worker died first)
--       | {'busy', seconds}   running under a live call lease
--       | {'exhausted', attempts}   max attempts made (not counted again)
--       | {'run', attempt, tool, args json}
local step, conv, t, i = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local worker, max_attempts, lease_s, task = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8]),
                                            ARGV[9]
local why = agent_inactive(KEYS[1], KEYS[2], step, conv)
if why then return {'inactive', why} end
local prefix = step .. '|' .. conv
local field = prefix .. '|' .. t .. '|' .. i
local call = agent_get(KEYS[4], field)
if not call then return {'inactive', 'no call ' .. t .. '.' .. i} end
if call.status == 'succeeded' or call.status == 'failed' or call.status == 'refused' then
  local left = redis.call('HGET', KEYS[4], prefix .. '|' .. t .. '|left') or '0'
  local begun = redis.call('HEXISTS', KEYS[4], prefix .. '|' .. (t + 1))
  return {'done', call.status, left, tostring(begun)}
end
local name = call_lease(step, t, i)
local lease = tonumber(redis.call('HGET', KEYS[5], name) or '0')
if call.status == 'running' and lease > now_s() then
  return {'busy', string.format('%.6f', lease - now_s())}
end
local attempts = tonumber(call.attempts or 0)
if attempts >= max_attempts then return {'exhausted', tostring(attempts)} end
call.attempts = attempts + 1
call.status = 'running'
call.worker = worker
call.task = task
call.began_at = now()
if not call.started_at then call.started_at = call.began_at end
agent_put(KEYS[4], KEYS[1], field, call)
redis.call('HSET', KEYS[5], name, string.format('%.6f', now_s() + lease_s))
expire_with(KEYS[5], KEYS[1])
call_due(KEYS[2], step, t .. '.' .. i, nil)
call_event(KEYS[3], step, 'running', t, call)
return {'run', tostring(call.attempts), call.tool, call.args or 'null'}
