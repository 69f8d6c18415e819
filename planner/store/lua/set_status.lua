-- Move a run between its waiting states (awaiting_approval, paused) and running/pending,
-- only from the statuses given. Returns 1 if it moved, else 0.
-- KEYS: run, events.  ARGV: maxlen, new status, reason json, from statuses...
local current = redis.call('HGET', KEYS[1], 'status')
for i = 4, #ARGV do
  if current == ARGV[i] then
    redis.call('HSET', KEYS[1], 'status', ARGV[2], 'reason', ARGV[3])
    event(KEYS[2], 'run.' .. ARGV[2], '', ARGV[2], ARGV[3])
    return 1
  end
end
return 0
