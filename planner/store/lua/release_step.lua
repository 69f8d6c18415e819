-- A checkpoint's review said "go on": count down its dependents in the version that held
-- it, once. Nothing if a newer version was installed since (its counters already treat
-- the checkpoint as done) or if it was released already.
-- KEYS: run, steps, events, deps, dependents.  ARGV: maxlen, step, version
-- Returns {'ok', remaining, version, ready...} | {'stale'}
local step, version = ARGV[2], ARGV[3]
local run = redis.call('HMGET', KEYS[1], 'status', 'version', 'remaining')
if run[2] ~= version or redis.call('HGET', KEYS[2], step .. '.held') ~= version then
  return {'stale'}
end
redis.call('HDEL', KEYS[2], step .. '.held')
event(KEYS[3], 'step.released', step, 'succeeded', '')
local result = {'ok', run[3], version}
for _, down in ipairs(cjson.decode(redis.call('HGET', KEYS[5], step) or '[]')) do
  if redis.call('HINCRBY', KEYS[4], down, -1) == 0 then
    table.insert(result, down)
    due(KEYS[2], down)
  end
end
return result
