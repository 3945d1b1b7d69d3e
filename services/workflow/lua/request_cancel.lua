-- request_cancel: record a cancel request for the owner, and tell listeners.
--
-- KEYS[1] H   the workflow's hash   {p}:wf:{<id>}
--
-- ARGV[1] workflow id      ARGV[2] reason      ARGV[3] pub/sub channel ({p}:cancel)
--
-- Returns 1 when recorded (or one was already); 0 if the workflow is finished;
-- -1 if it is unknown.
--
-- Guarantees: the first reason is kept (a later request changes nothing but
-- is published again); the owner learns it from renew (always) and from the
-- channel, which carries the workflow id (best effort: pub/sub is not stored).

local h = KEYS[1]
local state = redis.call('HGET', h, 'state')
if not state then
  return -1
end
if TERMINAL[state] then
  return 0
end
redis.call('HSETNX', h, 'cancel', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
