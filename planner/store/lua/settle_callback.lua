-- Settle a claim, if it is still ours (its due time is our lease): done (ARGV[3] empty),
-- or due again in ARGV[3] ms. A run that ended again meanwhile was queued afresh: its new
-- entry is not ours to touch.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', KEYS[1], 'XX', string.format('%.0f', now + tonumber(ARGV[3])),
             ARGV[1])
end
return 1
