-- discard: delete a workflow that never started, so its id and request id
-- can be used again.
--
-- KEYS[1] H      the workflow's hash     {p}:wf:{<id>}
-- KEYS[2] T      its task records        {p}:wf:{<id>}:t
-- KEYS[3] E      its event stream        {p}:wf:{<id>}:e
-- KEYS[4] REQ    its request id record   {p}:req:<owner>:<request_id>
-- KEYS[5] INDEX  creation number -> id (zset)         {p}:index
-- KEYS[6] LIVE   id scored by lease expiry ms (zset)  {p}:live
--
-- ARGV[1] workflow id      ARGV[2] fencing token
--
-- Returns 1 when deleted; -1 if the workflow is unknown; -2 if the token is
-- not the current one or the workflow is finished (nothing deleted then).
--
-- Guarantees: the header, the task records, the listing and orphan entries
-- and the request id (if it names this workflow) go together. The stream is
-- replaced by one tombstone entry (field "gone") that expires in 60 s: a
-- reader blocked on the stream (XREAD BLOCK) wakes and finds the workflow
-- gone; deleting the stream would leave it blocked until its timeout.

local h, t, e, req, index, live = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local wf_id = ARGV[1]

local cur = redis.call('HMGET', h, 'token', 'state', 'seq')
if not cur[1] then
  return -1
end
if cur[1] ~= ARGV[2] or TERMINAL[cur[2]] then
  return -2
end
redis.call('DEL', h, t)
if redis.call('HGET', req, 'wf') == wf_id then
  redis.call('DEL', req)
end
redis.call('ZREM', index, wf_id)
redis.call('ZREM', live, wf_id)
redis.call('XADD', e, (tonumber(cur[3]) + 1) .. '-0', 'gone', '1')
redis.call('PEXPIRE', e, 60000)
return 1
