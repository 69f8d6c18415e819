-- An event in the run's stream (after run.finished), unless its record expired.
-- KEYS: run, events.  ARGV: maxlen, type, data json
if gone(KEYS[1]) then return 0 end
event(KEYS[2], ARGV[2], '', redis.call('HGET', KEYS[1], 'status'), ARGV[3])
return 1
