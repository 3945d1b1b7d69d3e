-- release: let a lease lapse now (a graceful hand-off).
--
-- KEYS[1] H     the workflow's hash                   {p}:wf:{<id>}
-- KEYS[2] LIVE  id scored by lease expiry ms (zset)   {p}:live
--
-- ARGV[1] workflow id      ARGV[2] fencing token
--
-- Returns 1 when released, 0 if the token is stale or the workflow unknown
-- (nothing changed then).
--
-- Guarantees: a live workflow released is an orphan at once (score 0: before
-- every lease that lapsed by time), claimable by any replica; the token
-- stays, so the releasing replica cannot write any more once another claims.

local h, live = KEYS[1], KEYS[2]
local cur = redis.call('HMGET', h, 'token', 'state')
if not cur[1] or cur[1] ~= ARGV[2] then
  return 0
end
redis.call('HSET', h, 'replica', '', 'until_ms', '0')
if not TERMINAL[cur[2]] then
  redis.call('ZADD', live, 0, ARGV[1])
end
return 1
