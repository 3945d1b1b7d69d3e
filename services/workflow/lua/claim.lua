-- claim: take the lease of a live workflow whose lease lapsed or was released.
--
-- KEYS[1] H     the workflow's hash                   {p}:wf:{<id>}
-- KEYS[2] LIVE  id scored by lease expiry ms (zset)   {p}:live
--
-- ARGV[1] workflow id      ARGV[2] replica      ARGV[3] lease ttl ms
--
-- Returns the new fencing token, or nil (unknown, finished, or its lease runs
-- until a later server time than now).
--
-- Guarantees: tokens only grow, so every write of the previous owner is
-- refused from now on; the lease runs until server time + ttl.

local h, live = KEYS[1], KEYS[2]
local cur = redis.call('HMGET', h, 'state', 'until_ms')
if not cur[1] or TERMINAL[cur[1]] then
  return nil
end
local now = now_ms()
if tonumber(cur[2]) > now then
  return nil
end
local token = redis.call('HINCRBY', h, 'token', 1)
local until_ms = now + tonumber(ARGV[3])
redis.call('HSET', h, 'replica', ARGV[2], 'until_ms', until_ms)
redis.call('ZADD', live, until_ms, ARGV[1])
return token
