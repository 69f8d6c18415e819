-- Re-drive an ended run from where it stopped: the given steps (failed, cancelled) go back
-- to pending; what was earned stays; the run is running again (pending if it never had a
-- plan). Attempts keep counting: each step's `base` notes those made so far, so its
-- `max_retries` counts afresh from there. An attempt of a cancelled step that still runs
-- keeps its lease: the step waits for it (begin_step), and its late result is superseded.
-- Counters need no change: a step that did not succeed never counted its dependents down.
-- A run that ended while awaiting approval (rejected, or cancelled before approval) never
-- ran its plan, and never may.
-- KEYS: run, events, steps, deps, unhandled, claims.  ARGV: maxlen, steps json
-- Returns {'ok', version} | {'not_ended', status} | {'not_retryable', step}
--       | {'never_approved', error type}
local run = redis.call('HMGET', KEYS[1], 'status', 'ended_from', 'error')
local status = run[1]
if status ~= 'failed' and status ~= 'cancelled' then return {'not_ended', status or ''} end
local kind = ''
if run[3] and run[3] ~= '' then kind = cjson.decode(run[3]).type or '' end
if run[2] == 'awaiting_approval' or kind == 'Rejected' then
  return {'never_approved', kind}
end
local steps = cjson.decode(ARGV[2])
for _, step in ipairs(steps) do
  local s = redis.call('HGET', KEYS[3], step .. '.status')
  if redis.call('HEXISTS', KEYS[4], step) == 0 or (s ~= 'failed' and s ~= 'cancelled') then
    return {'not_retryable', step}
  end
end
local claims = redis.call('HKEYS', KEYS[6])
for _, step in ipairs(steps) do
  -- An errback of its next message that fails before it begins claims the current attempt
  -- number again: the old claims must go.
  for _, name in ipairs(claims) do
    if string.sub(name, 1, #step + 9) == 'errback:' .. step .. ':' then
      redis.call('HDEL', KEYS[6], name)
    end
  end
  local made = redis.call('HGET', KEYS[3], step .. '.attempts') or '0'
  redis.call('HSET', KEYS[3], step .. '.status', 'pending', step .. '.base', made)
  redis.call('HDEL', KEYS[3], step .. '.dispatched', step .. '.held', step .. '.finished_at')
  redis.call('SREM', KEYS[5], step)
  due(KEYS[3], step)
end
local version = redis.call('HGET', KEYS[1], 'version')
-- The replanner of this version may run again for a failure that comes back.
redis.call('HDEL', KEYS[6], 'replan:' .. version)
redis.call('HSET', KEYS[1], 'status', version == '0' and 'pending' or 'running',
           'answer', '', 'error', '', 'partial', '0')
redis.call('HDEL', KEYS[1], 'finished_at', 'ending', 'reason', 'ended_from')
event(KEYS[2], 'run.retried', '', 'running', cjson.encode(steps))
return {'ok', version}
