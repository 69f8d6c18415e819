-- Re-drive an ended run from where it stopped: the given steps (failed, cancelled) go back
-- to pending with a fresh count of attempts; what was earned stays; the run is running
-- again (pending if it never had a plan). Counters need no change: a step that did not
-- succeed never counted its dependents down.
-- KEYS: run, events, steps, deps, unhandled, claims.  ARGV: maxlen, steps json
-- Returns {'ok', version} | {'not_ended', status} | {'not_retryable', step}
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'failed' and status ~= 'cancelled' then return {'not_ended', status or ''} end
local steps = cjson.decode(ARGV[2])
for _, step in ipairs(steps) do
  local s = redis.call('HGET', KEYS[3], step .. '.status')
  if redis.call('HEXISTS', KEYS[4], step) == 0 or (s ~= 'failed' and s ~= 'cancelled') then
    return {'not_retryable', step}
  end
end
local claims = redis.call('HKEYS', KEYS[6])
for _, step in ipairs(steps) do
  -- Its attempts count afresh, so the errback claims of the old ones must go.
  for _, name in ipairs(claims) do
    if string.sub(name, 1, #step + 9) == 'errback:' .. step .. ':' then
      redis.call('HDEL', KEYS[6], name)
    end
  end
  redis.call('HSET', KEYS[3], step .. '.status', 'pending', step .. '.attempts', '0')
  redis.call('HDEL', KEYS[3], step .. '.dispatched', step .. '.held', step .. '.finished_at')
  redis.call('SREM', KEYS[5], step)
  due(KEYS[3], step)
end
local version = redis.call('HGET', KEYS[1], 'version')
-- The replanner of this version may run again for a failure that comes back.
redis.call('HDEL', KEYS[6], 'replan:' .. version)
redis.call('HSET', KEYS[1], 'status', version == '0' and 'pending' or 'running',
           'answer', '', 'error', '', 'partial', '0')
redis.call('HDEL', KEYS[1], 'finished_at', 'ending', 'reason')
event(KEYS[2], 'run.retried', '', 'running', cjson.encode(steps))
return {'ok', version}
