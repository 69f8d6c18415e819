-- A step's message was published again (a re-drive, under a new task id): that id is the
-- step's live task id now (`live_task` in lib.lua).
-- KEYS: run, steps.  ARGV: maxlen, step, task id
if gone(KEYS[1]) then return 0 end
live_task(KEYS[2], ARGV[2], ARGV[3])
return 1
