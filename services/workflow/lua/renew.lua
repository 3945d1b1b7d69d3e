-- renew: extend the leases one replica holds, and report pending cancels.
--
-- KEYS[1]       LIVE, id scored by lease expiry ms (zset)   {p}:live
-- KEYS[2 .. n+1] the n workflows' hashes                     {p}:wf:{<id>}
--
-- ARGV[1] replica      ARGV[2] lease ttl ms
-- ARGV[3 ..]           n pairs workflow id, fencing token (in KEYS order)
--
-- Returns one entry per workflow, in order: 0 when the lease is lost
-- (unknown, finished, another token or another replica), else 1, or the
-- cancel request's reason (a string, maybe empty) when one is pending.
--
-- Guarantees: only leases still held with the same token by the same replica
-- are extended, each to server time + ttl.

local live, replica = KEYS[1], ARGV[1]
local until_ms = now_ms() + tonumber(ARGV[2])
local out = {}
for i = 2, #KEYS do
  local h = KEYS[i]
  local wf_id, token = ARGV[2 * i - 1], ARGV[2 * i]
  local cur = redis.call('HMGET', h, 'token', 'replica', 'state', 'cancel')
  if not cur[1] or cur[1] ~= token or cur[2] ~= replica or TERMINAL[cur[3]] then
    out[#out + 1] = 0
  else
    redis.call('HSET', h, 'until_ms', until_ms)
    redis.call('ZADD', live, until_ms, wf_id)
    if cur[4] then
      out[#out + 1] = cur[4]
    else
      out[#out + 1] = 1
    end
  end
end
return out
