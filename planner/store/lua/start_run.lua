-- pending -> running, once. Returns 1 if it started the run now, 0 otherwise.
-- KEYS: run, events.  ARGV: maxlen
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'running')
event(KEYS[2], 'run.started', '', 'running', '')
return 1
