-- Record a run with its plan and start it, in one call (a submitted plan's path): the
-- scripts create_run, install_plan (version 1), then start_run or set_status (a run that
-- waits for approval), and mark_dispatched for its roots, each its own file composed in
-- front of this one as a function of (KEYS, ARGV) (planner/store/scripts.py). The same
-- checks, records and events as the five calls, with no other client seeing a half-made
-- run: the run id taken writes nothing.
-- The roots are noted dispatched before their messages are published (a publish needs
-- the script's answer first), noted 's' (the submitting client is to publish them), not
-- '1': a client that dies in between leaves no message anywhere, and none comes back to
-- recover it; the reconciler publishes the 's' roots again (under the same task ids) once
-- the run is older than its grace and none of its steps has begun
-- (planner/engine/reconcile.py). A refused publish ends the run failed
-- (planner/engine/start.py publish_or_fail).
-- KEYS: run, steps, events, deps, dependents, plans, versions, unhandled
-- ARGV: maxlen, run id, goal, options json, ttl, plan json, edges json, version record
--       json, tools json, approval reason json ('' : start it), (step, queue, task id)...
-- Returns {0} (the run id is taken) | {creation time, status, remaining, ready...}
local stamp = create_run({KEYS[1], KEYS[3]}, {ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]})
if stamp == 0 then return {0} end
local installed = install_plan(KEYS, {ARGV[1], '0', '1', ARGV[6], ARGV[7], '[]', ARGV[8],
                                      ARGV[5], ARGV[9]})
local result = {stamp, '', installed[2]}
if ARGV[10] ~= '' then
  set_status({KEYS[1], KEYS[3]}, {ARGV[1], 'awaiting_approval', ARGV[10], 'pending'})
  result[2] = 'awaiting_approval'
  return result
end
start_run({KEYS[1], KEYS[3]}, {ARGV[1]})
result[2] = 'running'
-- Only the steps the install found ready (its roots) are noted, with the message ids the
-- client will publish them under.
local ready = {}
for i = 3, #installed do ready[installed[i]] = true end
local marks = {ARGV[1], '0'}
for i = 11, #ARGV, 3 do
  if ready[ARGV[i]] then
    table.insert(marks, ARGV[i])
    table.insert(marks, ARGV[i + 1])
    table.insert(marks, ARGV[i + 2])
    table.insert(result, ARGV[i])
  end
end
mark_dispatched({KEYS[1], KEYS[2]}, marks)
for i = 4, #result do redis.call('HSET', KEYS[2], result[i] .. '.dispatched', 's') end
return result
