-- The model-call rate limit shared by every worker: a sliding window of call times.
-- Take a slot (returns 0) or say how many ms until one frees up. Not a run script: no lib.
-- KEYS: calls.  ARGV: limit per minute, a unique member (empty: only look, take nothing)
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, now_ms - 60000)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  if ARGV[2] == '' then return 0 end
  redis.call('ZADD', KEYS[1], now_ms, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], 61000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tonumber(oldest[2]) + 60000 - now_ms
