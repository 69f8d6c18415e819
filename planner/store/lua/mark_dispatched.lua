-- These steps' messages were published (with a countdown): recovery does not publish them
-- again, and the reconciler expects them to start by their due time.
-- Each step's queue is kept too: the queue-depth gauge counts the steps dispatched and not
-- started by queue, and the queue-wait histogram is labelled with it.
-- The message's task id ('' if not given) is the step's live task id (`live_task`).
-- KEYS: run, steps.  ARGV: maxlen, countdown seconds, (step, queue, task id)...
if gone(KEYS[1]) then return 0 end
for i = 3, #ARGV, 3 do
  live_task(KEYS[2], ARGV[i], ARGV[i + 2])
  redis.call('HSET', KEYS[2], ARGV[i] .. '.dispatched', '1')
  if ARGV[i + 1] ~= '' then redis.call('HSET', KEYS[2], ARGV[i] .. '.queue', ARGV[i + 1]) end
  due(KEYS[2], ARGV[i], tonumber(ARGV[2]))
end
return 1
