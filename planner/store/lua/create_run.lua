-- Record a new run, all at once (a crash leaves either nothing or the whole record, with
-- its expiry): status 'pending', no plan version yet.
-- KEYS: run, events.  ARGV: maxlen, run id, goal, options json, ttl
-- Returns the creation time, or 0 if the run id is taken.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local stamp = now()
redis.call('HSET', KEYS[1], 'id', ARGV[2], 'goal', ARGV[3], 'status', 'pending',
           'version', '0', 'created_at', stamp, 'remaining', '0', 'answer', '', 'error', '',
           'options', ARGV[4])
event(KEYS[2], 'run.created', '', 'pending', '')
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return stamp
