-- pending or running -> a final status, once. Returns 1 if it ended the run now, else 0.
-- KEYS: run, events.  ARGV: maxlen, status, answer json, error json
local current = redis.call('HGET', KEYS[1], 'status')
if current ~= 'running' and current ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'finished_at', now(), 'answer', ARGV[3],
           'error', ARGV[4])
event(KEYS[2], 'run.finished', '', ARGV[2], ARGV[4])
return 1
