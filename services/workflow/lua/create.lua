-- create: store a new workflow owned by a replica under a fresh lease.
--
-- KEYS[1] H        the workflow's hash            {p}:wf:{<id>}
-- KEYS[2] T        its task records               {p}:wf:{<id>}:t
-- KEYS[3] E        its event stream               {p}:wf:{<id>}:e
-- KEYS[4] REQ      the owner's request id record  {p}:req:<owner>:<request_id>
-- KEYS[5] CREATED  the global creation counter    {p}:created
-- KEYS[6] INDEX    creation number -> id (zset)   {p}:index
-- KEYS[7] LIVE     id scored by lease expiry ms   {p}:live
--
-- ARGV[1] workflow id        ARGV[2] header bytes (Workflow without tasks and status)
-- ARGV[3] state              ARGV[4] spent       ARGV[5] error     ARGV[6] end (Timestamp bytes)
-- ARGV[7] replica            ARGV[8] lease ttl ms
-- ARGV[9] owner              ARGV[10] request id ("" for none)    ARGV[11] fingerprint
-- ARGV[12] retention ms      ARGV[13] tag bytes of WorkflowEvent.sequence
-- ARGV[14] n events          ARGV[15] n tasks
-- ARGV[16 ..]                the n events (WorkflowEvent bytes, sequence unset), then
--                            n pairs task id, TaskRun bytes
--
-- Returns {1, token, last sequence, creation number}; {-1} if the id is taken;
-- {-2, workflow id, fingerprint} if the owner's request id created a workflow
-- already. Nothing is written unless it returns 1.
--
-- Guarantees: ids and (owner, request id) are unique; the lease's token is 1
-- and runs until server time + ttl; events get sequences 1..n; a workflow
-- created in a terminal state holds no lease and expires after the retention.

local h, t, e, req, created, index, live = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local wf_id, state, request_id = ARGV[1], ARGV[3], ARGV[10]
local n_events, n_tasks = tonumber(ARGV[14]), tonumber(ARGV[15])

if redis.call('EXISTS', h) == 1 then
  return { -1 }
end
if request_id ~= '' then
  local found = redis.call('HMGET', req, 'wf', 'fp')
  if found[1] then
    return { -2, found[1], found[2] }
  end
end

-- Left over from a discarded workflow of the same id (the stream keeps a
-- tombstone for a while, see discard.lua): start clean.
redis.call('DEL', t, e)

local number = redis.call('INCR', created)
local until_ms = now_ms() + tonumber(ARGV[8])
redis.call('HSET', h,
  'header', ARGV[2], 'state', state, 'spent', ARGV[4], 'error', ARGV[5], 'end', ARGV[6],
  'seq', '0', 'replica', ARGV[7], 'token', '1', 'until_ms', until_ms,
  'owner', ARGV[9], 'request', request_id)
hset_pairs(t, 16 + n_events, n_tasks)
local seq = append_events(e, 0, ARGV[13], 16, n_events)
redis.call('HSET', h, 'seq', seq)
redis.call('ZADD', index, number, wf_id)
if request_id ~= '' then
  redis.call('HSET', req, 'wf', wf_id, 'fp', ARGV[11])
end
if TERMINAL[state] then
  finish(h, t, e, req, live, wf_id, ARGV[12])
else
  redis.call('ZADD', live, until_ms, wf_id)
end
return { 1, 1, seq, number }
