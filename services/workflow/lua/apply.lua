-- apply: one transition of one workflow, fenced by the writer's token.
--
-- KEYS[1] H     the workflow's hash     {p}:wf:{<id>}
-- KEYS[2] T     its task records        {p}:wf:{<id>}:t
-- KEYS[3] E     its event stream        {p}:wf:{<id>}:e
-- KEYS[4] LIVE  id scored by lease expiry ms (zset)   {p}:live
-- KEYS[5] REQ   its request id record (expired with it when the state is terminal)
--
-- ARGV[1] workflow id      ARGV[2] fencing token
-- ARGV[3] new state ("0" leaves it)                   ARGV[4] spent delta
-- ARGV[5] "1" to set the error to ARGV[6]             ARGV[7] "1" to set the end to ARGV[8]
-- ARGV[9] retention ms     ARGV[10] tag bytes of WorkflowEvent.sequence
-- ARGV[11] n events        ARGV[12] n tasks
-- ARGV[13] write id ("" for none): equal to the last applied one, the call is a retry
--          of a write that landed (its reply was lost) and writes nothing
-- ARGV[14 ..]              the n events (sequence unset), then n pairs task id, TaskRun bytes
--
-- Returns {1, last sequence} (also for a retried write id); {-1} if the workflow is unknown; {-2, current
-- token} if the token is not the current one or the workflow is finished.
-- Nothing is written unless it returns 1.
--
-- Guarantees: task records, status fields and events are written together or
-- not at all; events are numbered on from the last sequence without gaps; a
-- terminal state ends the lease and the cancel request and starts retention.

local h, t, e, live, req = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local wf_id, state = ARGV[1], ARGV[3]
local n_events, n_tasks = tonumber(ARGV[11]), tonumber(ARGV[12])

local cur = redis.call('HMGET', h, 'token', 'state', 'seq')
if not cur[1] then
  return { -1 }
end
if cur[1] ~= ARGV[2] or TERMINAL[cur[2]] then
  return { -2, tonumber(cur[1]) }
end

if ARGV[13] ~= '' then
  if redis.call('HGET', h, 'write') == ARGV[13] then
    return { 1, tonumber(cur[3]) }
  end
  redis.call('HSET', h, 'write', ARGV[13])
end

hset_pairs(t, 14 + n_events, n_tasks)
if state ~= '0' then
  redis.call('HSET', h, 'state', state)
end
if ARGV[4] ~= '0' then
  redis.call('HINCRBY', h, 'spent', ARGV[4])
end
if ARGV[5] == '1' then
  redis.call('HSET', h, 'error', ARGV[6])
end
if ARGV[7] == '1' then
  redis.call('HSET', h, 'end', ARGV[8])
end
local seq = tonumber(cur[3])
if n_events > 0 then
  seq = append_events(e, seq, ARGV[10], 14, n_events)
  redis.call('HSET', h, 'seq', seq)
end
if TERMINAL[state] then
  finish(h, t, e, req, live, wf_id, ARGV[9])
end
return { 1, seq }
