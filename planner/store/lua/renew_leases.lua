-- Leases of one run held by one worker process: renew those still held ('renew': a lease
-- deleted or taken over stays so), or take new ones ('take', for run-level tasks).
-- KEYS: run, leases.  ARGV: maxlen, mode, seconds, names...
-- Returns the number of leases set.
if gone(KEYS[1]) then return 0 end
local until_s = string.format('%.6f', now_s() + tonumber(ARGV[3]))
local n = 0
for i = 4, #ARGV do
  if ARGV[2] == 'take' or redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[2], ARGV[i], until_s)
    n = n + 1
  end
end
expire_with(KEYS[2], KEYS[1])
return n
