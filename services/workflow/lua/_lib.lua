-- Helpers shared by the workflow store's scripts. Not a script of its own:
-- redis_store.py prepends this file to each script before registering it, so
-- everything here is local to the script that uses it.
--
-- Records of one workflow (see redis_store.py): the hash H (header bytes and
-- status/lease fields), the hash T (task id -> TaskRun bytes), the stream E
-- (entry id "<seq>-0", field "e" = WorkflowEvent bytes with its sequence).

-- WorkflowState numbers of SUCCEEDED, FAILED and CANCELLED, as stored (strings).
local TERMINAL = { ['3'] = true, ['4'] = true, ['5'] = true }

-- The server's clock in milliseconds: every replica's lease is measured on it.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Protobuf base-128 varint of a non-negative integer.
local function varint(n)
  local out = {}
  while n >= 128 do
    out[#out + 1] = string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  out[#out + 1] = string.char(n)
  return table.concat(out)
end

-- HSET key with the field/value pairs ARGV[first .. first + 2*count - 1], 500
-- pairs per call: unpack() of a huge slice would overflow Lua's C stack.
local function hset_pairs(key, first, count)
  local last = first + 2 * count - 1
  local i = first
  while i <= last do
    local j = math.min(i + 999, last)
    redis.call('HSET', key, unpack(ARGV, i, j))
    i = j + 1
  end
end

-- XADD the events ARGV[first .. first + count - 1] to stream key, numbered
-- from seq + 1. Each event was serialized without its sequence; the sequence
-- field (tag bytes seq_tag, field 1: the first in canonical order) goes in
-- front, so the stored bytes are the event with its sequence. Returns the
-- last sequence.
local function append_events(key, seq, seq_tag, first, count)
  for i = first, first + count - 1 do
    seq = seq + 1
    redis.call('XADD', key, seq .. '-0', 'e', seq_tag .. varint(seq) .. ARGV[i])
  end
  return seq
end

-- A terminal state was written: end the lease and the cancel request, leave
-- the orphan set, and let every record (and the request id, if it still names
-- this workflow) expire after the retention.
local function finish(h, t, e, req, live, wf_id, retention_ms)
  redis.call('HSET', h, 'replica', '', 'until_ms', '0')
  redis.call('HDEL', h, 'cancel')
  redis.call('ZREM', live, wf_id)
  redis.call('PEXPIRE', h, retention_ms)
  redis.call('PEXPIRE', t, retention_ms)
  redis.call('PEXPIRE', e, retention_ms)
  if redis.call('HGET', req, 'wf') == wf_id then
    redis.call('PEXPIRE', req, retention_ms)
  end
end
