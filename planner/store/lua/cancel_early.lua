-- Steps started while their plan was still streaming in, which the final plan contradicts
-- (it leaves them out, changes them, or changes a step they read): each is cancelled
-- before the final plan is installed, and says so (`step.cancelled`). A step the final
-- plan leaves out ends `replaced` (final: a late result of its attempt is superseded); a
-- step it keeps, changed, goes back to `pending` with a fresh attempt budget and no
-- output, so the final plan runs it as it now reads. Its lease stays: an attempt still
-- running finishes (its result superseded) before the new one may start.
-- KEYS: run, steps, events, outputs
-- ARGV: maxlen, json [steps left out], json [steps changed or reading a changed one]
-- Returns the steps cancelled (those that had been published or had started).
local cancelled = {}
local drop = {}
local ids = {}
for _, step in ipairs(cjson.decode(ARGV[2])) do drop[step] = true; table.insert(ids, step) end
for _, step in ipairs(cjson.decode(ARGV[3])) do table.insert(ids, step) end
table.sort(ids)
for _, step in ipairs(ids) do
  local s = redis.call('HMGET', KEYS[2], step .. '.status', step .. '.attempts',
                       step .. '.dispatched')
  local status, attempts = s[1], tonumber(s[2] or '0')
  if status and status ~= 'replaced' and (attempts > 0 or s[3] == '1') then
    if status == 'running' then
      note_attempt(KEYS[2], step, attempts, {status = 'cancelled', finished_at = now()})
    end
    if drop[step] then
      redis.call('HSET', KEYS[2], step .. '.status', 'replaced', step .. '.finished_at', now())
    else
      redis.call('HSET', KEYS[2], step .. '.status', 'pending', step .. '.base', attempts)
      redis.call('HDEL', KEYS[2], step .. '.finished_at', step .. '.dispatched',
                 step .. '.error', step .. '.held')
      redis.call('HDEL', KEYS[4], step)
    end
    event(KEYS[3], 'step.cancelled', step, status,
          cjson.encode({reason = 'contradicted by the final plan',
                        action = drop[step] and 'drop' or 'reset'}))
    table.insert(cancelled, step)
  end
end
return cancelled
