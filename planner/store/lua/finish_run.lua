-- A run that has not ended ends, once: its status, answer and error are set, and every step
-- of its current version that is not final is marked 'cancelled' (abandoned), so a final
-- report never shows a step running (of any plan version: a step a replan left out after
-- it started included); an attempt still running is noted `cancelled` on its record.
-- Returns {seconds since the run was created} (for the metrics) if
-- it ended the run now, else 0.
-- KEYS: run, events, steps, deps.  ARGV: maxlen, status, answer json, error json, partial
local current = redis.call('HGET', KEYS[1], 'status')
if current ~= 'running' and current ~= 'pending' and current ~= 'paused'
    and current ~= 'awaiting_approval' then
  return 0
end
local fields = redis.call('HGETALL', KEYS[3])
for i = 1, #fields, 2 do
  local step = string.match(fields[i], '^(.+)%.status$')
  if step and not is_final(fields[i + 1]) and fields[i + 1] ~= 'cancelled' then
    redis.call('HSET', KEYS[3], step .. '.status', 'cancelled', step .. '.finished_at', now())
    if fields[i + 1] == 'running' then
      local n = tonumber(redis.call('HGET', KEYS[3], step .. '.attempts') or '0')
      if n > 0 then note_attempt(KEYS[3], step, n, {status = 'cancelled'}) end
    end
  end
end
-- What it ended from: a run that ended awaiting approval never ran, and never may.
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'finished_at', now(), 'answer', ARGV[3],
           'error', ARGV[4], 'partial', ARGV[5], 'ended_from', current)
redis.call('HDEL', KEYS[1], 'ending')
event(KEYS[2], 'run.finished', '', ARGV[2], ARGV[4])
return {since(redis.call('HGET', KEYS[1], 'created_at'))}
