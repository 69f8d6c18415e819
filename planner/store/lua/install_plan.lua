-- Make a plan version the run's current one, once, atomically, from the step states of
-- this moment: the dependency counters, the reverse edges and the remaining count are built
-- here, so no outcome recorded between the replanner's snapshot and now is lost.
-- Old-version steps the new plan leaves out are marked 'replaced' if they never started
-- (a late message of theirs finds them final and does nothing); started ones keep going.
-- KEYS: run, steps, events, deps, dependents, plans, versions, unhandled
-- ARGV: maxlen, expected version, new version, plan json, edges json ({id: [deps]}),
--       handled failures json ([ids]), version record json, ttl, tools json ({id: tool}:
--       kept per step, so a transition can tell the metrics which tool it was)
-- Returns {'ok', remaining, ready...} | {'stale', current version} | {'inactive', status}
-- Published ('1'), noted by a finish as being published ('p') or by the one-call submit
-- as published by its client ('s'), the only marks: its message is on its way in each
-- case, and only that finish's redelivery (or, for 's', the reconciler) may publish it
-- again.
local function published(mark) return mark ~= false end

local expected, version, plan, ttl = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[8])
local edges = cjson.decode(ARGV[5])
local tools = cjson.decode(ARGV[9] or '{}')
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'pending' and status ~= 'running' and status ~= 'paused'
    and status ~= 'awaiting_approval' then
  return {'inactive', status or 'missing'}
end
local current = redis.call('HGET', KEYS[1], 'version')
if current ~= expected then return {'stale', current or ''} end
if redis.call('HEXISTS', KEYS[6], version) == 1 then return {'stale', current} end

local function earned(step)
  local s = redis.call('HGET', KEYS[2], step .. '.status')
  return s == 'succeeded' or s == 'skipped'
end

-- Steps of the old version that the new one leaves out and that never started.
local old = redis.call('HKEYS', KEYS[4])
for _, step in ipairs(old) do
  if edges[step] == nil then
    local s = redis.call('HGET', KEYS[2], step .. '.status')
    local tries = tonumber(redis.call('HGET', KEYS[2], step .. '.attempts') or '0')
    if (s == false or s == 'pending') and tries == 0 then
      redis.call('HSET', KEYS[2], step .. '.status', 'replaced', step .. '.finished_at', now())
    end
  end
end

redis.call('DEL', KEYS[4], KEYS[5])
local remaining, ready, dependents = 0, {}, {}
for step, ups in pairs(edges) do
  redis.call('HSETNX', KEYS[2], step .. '.status', 'pending')
  redis.call('HSETNX', KEYS[2], step .. '.attempts', '0')
  if tools[step] then redis.call('HSET', KEYS[2], step .. '.tool', tools[step]) end
  local waiting = 0
  for _, up in ipairs(ups) do
    if not earned(up) then waiting = waiting + 1 end
    dependents[up] = dependents[up] or {}
    table.insert(dependents[up], step)
  end
  redis.call('HSET', KEYS[4], step, waiting)
  if not earned(step) then remaining = remaining + 1 end
  local s = redis.call('HGET', KEYS[2], step .. '.status')
  if s == 'pending' and waiting > 0 then
    -- Not ready in this version: whoever unlocks it publishes it.
    redis.call('HDEL', KEYS[2], step .. '.dispatched')
  elseif s == 'pending' and not published(redis.call('HGET', KEYS[2], step .. '.dispatched')) then
    table.insert(ready, step)
    due(KEYS[2], step)
  end
end
for up, downs in pairs(dependents) do
  table.sort(downs)
  redis.call('HSET', KEYS[5], up, cjson.encode(downs))
end
for _, step in ipairs(cjson.decode(ARGV[6])) do redis.call('SREM', KEYS[8], step) end
-- A failure of a step the new version leaves out is moot: the new plan routes around it.
for _, step in ipairs(redis.call('SMEMBERS', KEYS[8])) do
  if edges[step] == nil then redis.call('SREM', KEYS[8], step) end
end
redis.call('HSET', KEYS[6], version, plan)
redis.call('HSET', KEYS[7], version, ARGV[7])
redis.call('HSET', KEYS[1], 'version', version, 'remaining', remaining)
for i = 1, 8 do redis.call('EXPIRE', KEYS[i], ttl) end
event(KEYS[3], 'plan.installed', '', status, ARGV[7])
table.sort(ready)
local result = {'ok', tostring(remaining)}
for _, step in ipairs(ready) do table.insert(result, step) end
return result
