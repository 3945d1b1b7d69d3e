-- log_page: a page of one account's ledger entries, newest first.
--
-- KEYS[1] B   the ledger's hash-tagged prefix, e.g. "{mw:eco}"; the keys read
--             are derived from it, as in commit.lua (same slot):
--             B:l:<account> (zset, seq -> seq) and B:ledger (stream, "<seq>-0").
--
-- ARGV[1] account id   ARGV[2] highest seq to include ("+inf" or "(<seq>")
-- ARGV[3] limit (> 0)
--
-- Returns a flat list: seq, entry JSON, seq, entry JSON ... (an entry missing
-- from the stream reads false). Writes nothing.
--
-- Guarantees: one moment of the log (one script); entries are read by their
-- explicit stream ids, so a page costs one XRANGE of one entry per item.

local B = KEYS[1]
local seqs = redis.call('ZREVRANGEBYSCORE', B .. ':l:' .. ARGV[1], ARGV[2], '-inf',
  'LIMIT', 0, ARGV[3])
local ledger = B .. ':ledger'
local out = {}
for i = 1, #seqs do
  local id = seqs[i] .. '-0'
  local got = redis.call('XRANGE', ledger, id, id)
  out[#out + 1] = seqs[i]
  out[#out + 1] = got[1] and got[1][2][2] or false
end
return out
