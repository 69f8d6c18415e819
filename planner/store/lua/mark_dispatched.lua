-- These steps' messages were published (with a countdown): recovery does not publish them
-- again, and the reconciler expects them to start by their due time.
-- KEYS: run, steps.  ARGV: maxlen, countdown seconds, steps...
if gone(KEYS[1]) then return 0 end
for i = 3, #ARGV do
  redis.call('HSET', KEYS[2], ARGV[i] .. '.dispatched', '1')
  due(KEYS[2], ARGV[i], tonumber(ARGV[2]))
end
return 1
