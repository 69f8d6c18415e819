-- Shared by every run-store script: loaded in front of each one (planner/store/scripts.py).
-- Convention: ARGV[1] of every script is the maximum length of the run's events stream.

-- Redis's own clock, "secs.micros": one clock for every worker.
local function now()
  local t = redis.call('TIME')
  return t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
end

-- The same clock as a number of seconds, for leases and due times.
local function now_s()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end

-- When a step is expected to start (ready now, or after a retry's delay): the reconciler
-- looks for a step still pending well past it (a message lost, or never published).
local function due(steps, step, delay)
  redis.call('HSET', steps, step .. '.due', string.format('%.6f', now_s() + (delay or 0)))
end

-- A step in one of these states never changes again (the one place this rule is written
-- in Lua; planner/store/records.py FINAL_STEP is the same rule in Python). 'cancelled' (a
-- step its ended run abandoned) is not final: a late result is still recorded.
local function is_final(status)
  return status == 'succeeded' or status == 'skipped' or status == 'failed'
    or status == 'replaced'
end

-- A run whose record expired (or never was): a late message must not recreate its keys,
-- which would then never expire.
local function gone(run_key)
  return redis.call('EXISTS', run_key) == 0
end

-- Seconds since a stored "secs.micros" moment, as a string ('' if there is none): a
-- duration for the metrics (a Lua number would come back to Python as an integer).
local function since(stamp)
  if not stamp then return '' end
  return string.format('%.6f', now_s() - tonumber(stamp))
end

local function event(stream, kind, step, status, data)
  redis.call('XADD', stream, 'MAXLEN', '~', ARGV[1], '*', 'type', kind, 'step', step,
             'status', status, 'ts', now(), 'data', data)
end

-- A key created beside the run's record expires with it.
local function expire_with(key, run_key)
  local ttl = redis.call('TTL', run_key)
  if ttl > 0 and redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ttl) end
end
