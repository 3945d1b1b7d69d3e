-- prune: drop listing entries of workflows that expired.
--
-- KEYS[1] INDEX  creation number -> id (zset)   {p}:index
--
-- ARGV[1 ..] pairs workflow id, creation number, seen without a header
--
-- Returns how many entries were removed.
--
-- Guarantees: an entry goes only if it still has that creation number, so a
-- workflow created again under the same id (a new number) keeps its entry.

local index, removed = KEYS[1], 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', index, ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    removed = removed + redis.call('ZREM', index, ARGV[i])
  end
end
return removed
