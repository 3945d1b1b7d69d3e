-- orphans: live workflows whose lease lapsed, oldest lapse first.
--
-- KEYS[1] LIVE  id scored by lease expiry ms (zset)   {p}:live
--
-- ARGV[1] limit (at least 1)
--
-- Returns up to limit workflow ids whose lease ends at or before the server's
-- time now, by lease end, then id. Read only.

return redis.call('ZRANGE', KEYS[1], '-inf', now_ms(), 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[1]))
