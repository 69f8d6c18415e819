-- Claim the most overdue callback: its due time moves a lease ahead (the claim's token)
-- and its attempts go up by one, before anything is sent.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1)
if #due == 0 then return false end
local lease = string.format('%.0f', now + tonumber(ARGV[1]))
redis.call('ZADD', KEYS[1], 'XX', lease, due[1])
local attempt = redis.call('HINCRBY', KEYS[2], due[1], 1)
return {due[1], lease, attempt}
