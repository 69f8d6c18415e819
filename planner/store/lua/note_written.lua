-- A step of a plan that streams in was written whole by the model (its JSON closed): the
-- moment goes in the run's events, on the clock of every other event, so the order of
-- "written" and "started" can be read afterwards.
-- KEYS: run, events
-- ARGV: maxlen, step, ready ('1': valid with what it reads, so it may start now)
if gone(KEYS[1]) then return 0 end
local status = redis.call('HGET', KEYS[1], 'status')
local early = ARGV[3] == '1' and 'true' or 'false'
event(KEYS[2], 'plan.step_written', ARGV[2], status, '{"early": ' .. early .. '}')
return 1
