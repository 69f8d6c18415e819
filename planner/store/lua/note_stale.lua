-- A task the step no longer runs under ended (revoked, or failed outside its tool: its
-- errback fired): the attempt that ran under it, if any, notes how it ended, and nothing
-- else changes (planner.engine.steps.is_current_task). If it was the last attempt begun
-- and the step no longer runs it (its run was cancelled, then retried), the lease it left
-- goes: a new message need not wait for an attempt that ended.
-- KEYS: run, steps, leases.
-- ARGV: maxlen, step, task id, how it ended (revoked: a person stopped it | superseded:
--       it failed after the step moved on), its outcome (revoked|failed), error json
-- Returns the attempt noted, or 0 (none ran under that task, or it ended otherwise).
local step, task = ARGV[2], ARGV[3]
if gone(KEYS[1]) or task == '' then return 0 end
local raw = redis.call('HGET', KEYS[2], step .. '.history')
if not raw then return 0 end
local n, was = 0, nil
for _, r in ipairs(cjson.decode(raw)) do
  if r.task == task then n, was = tonumber(r.attempt), r.status end
end
if n == 0 or (was ~= 'running' and was ~= 'lost' and was ~= 'cancelled') then return 0 end
note_attempt(KEYS[2], step, n, {status = ARGV[4], outcome = ARGV[5], finished_at = now(),
                                error = error_text(ARGV[6])})
local s = redis.call('HMGET', KEYS[2], step .. '.status', step .. '.attempts')
if s[1] ~= 'running' and tonumber(s[2] or '0') == n then redis.call('HDEL', KEYS[3], step) end
return n
