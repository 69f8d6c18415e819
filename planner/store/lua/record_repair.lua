-- The reconciler is about to repair a run: say so in its events (before acting), and count
-- it (the counter is written apart: not in the run's slot). A stalled-run repair also counts the repairs in a row that changed nothing: if the
-- newest event is still the previous repair's own, nothing happened since.
-- KEYS: run, events.  ARGV: maxlen, kind, step, repair json
-- Returns 1, or 0 if the run has no record.
if gone(KEYS[1]) then return 0 end
if ARGV[2] == 'stalled_run' then
  local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  local previous = redis.call('HGET', KEYS[1], 'nudged_at')
  if previous and last[1] and last[1][1] == previous then
    redis.call('HINCRBY', KEYS[1], 'nudges', 1)
  else
    redis.call('HSET', KEYS[1], 'nudges', 1)
  end
end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'type', 'run.repaired',
                      'step', ARGV[3], 'status', redis.call('HGET', KEYS[1], 'status'),
                      'ts', now(), 'data', ARGV[4])
if ARGV[2] == 'stalled_run' then redis.call('HSET', KEYS[1], 'nudged_at', id) end
return 1
