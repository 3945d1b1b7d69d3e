-- commit: apply one ledger plan all or nothing (services/economy/kernel.py's
-- docstring is the specification; memory_store.py is the reference).
--
-- KEYS[1] B   the ledger's hash-tagged prefix, e.g. "{mw:eco}".
--
-- Every key this script touches is derived from B, not passed in KEYS: a
-- ledger transaction touches a set of records, indexes and account logs that
-- depends on the plan's content (its accounts, the records its rule names),
-- which the caller could list only by encoding the plan twice. This is the one
-- deviation from "a script touches only keys passed in KEYS"; it stays
-- cluster-safe because every derived key carries B's hash tag, so all of them
-- live in the slot KEYS[1] routes to (the whole ledger is one slot: safe on a
-- cluster, not sharded by it):
--   B:r:<record>   hash    a record (a:<account> holds balances by asset)
--   B:i:<index>    zset    an index (lexicographic ones score 0)
--   B:l:<account>  zset    the account's log: member and score = entry seq
--   B:ledger       stream  every entry, id "<seq>-0", field e = entry JSON
--   B:seq          string  the last entry seq
--   B:k:<key>      string  an idempotency key's stored result (SET PX)
--
-- ARGV[1] the plan, JSON: [idem key ("" for none), fingerprint, ttl ms ("0":
--         keep none), checks, moves, puts, ops, read_back, also_log] where
--           checks  flat, 5 per check: kind ("E" Exists, "A" Absent,
--                   "F" FieldIs), record, field, value, fail reason
--           moves   flat, 6 per move: debit, credit, asset, amount, short
--                   reason, cap (1 or 0)
--           puts    flat, 2 per Put: record, [field, value, ...]
--           ops     Add, Delete, IndexAdd, IndexRemove in plan order, flat:
--                   "A" record field delta | "D" record |
--                   "I" index member score | "R" index member
--           read_back  record names
--           also_log   accounts whose logs list the entry besides those it posts to
--         Integers (amounts, deltas) are JSON numbers below 2^52 in magnitude,
--         decimal strings beyond (any size).
-- ARGV[2] the entry's JSON object without its postings and closing brace
--         ("" for a plan without an entry)
-- ARGV[3] the account allowed below zero (kernel.ISSUANCE)
--
-- Returns
--   {1, result}            applied; result = JSON [fingerprint, seq ("0": no
--                          entry), effective amount per move ("0": moved
--                          nothing), [name, [field, value, ...], ...]
--                          (read_back after the writes)]
--   {2, result, entry}     the idempotency key was stored: its result as above
--                          (the caller compares the fingerprint) and the
--                          entry's JSON (false when it had none); nothing written
--   {0, reason, subject}   refused by a check, a move's existence or funds
--   {-1, message}          a field the plan adds to or moves from holds no integer
-- Nothing is written unless it returns 1.
--
-- Guarantees: the plan is evaluated in the kernel's order (idempotency,
-- checks, moves against balances as changed by the moves before them) and
-- everything that can refuse or fail is settled BEFORE the first write (Lua
-- has no rollback): the Adds' results are computed on an overlay of the
-- plan's own writes. Balances are exact at any size (Lua numbers below 2^52,
-- decimal strings beyond). Entry seqs are consecutive.

local B = KEYS[1]
local R = B .. ':r:'
local plan = cjson.decode(ARGV[1])
local head, ISSUANCE = ARGV[2], ARGV[3]
local byte, strsub, format, find, match, floor =
  string.byte, string.sub, string.format, string.find, string.match, math.floor

-- 1. Idempotency ------------------------------------------------------------

local idem_key = nil
if plan[1] ~= '' then
  idem_key = B .. ':k:' .. plan[1]
  local stored = redis.call('GET', idem_key)
  if stored then
    local seq = cjson.decode(stored)[2]
    local entry = false
    if seq ~= '0' then
      local got = redis.call('XRANGE', B .. ':ledger', seq .. '-0', seq .. '-0')
      if got[1] then
        entry = got[1][2][2]
      end
    end
    return { 2, stored, entry }
  end
end

-- 2. Checks ------------------------------------------------------------------

local checks = plan[4]
for i = 1, #checks, 5 do
  local kind, rec = checks[i], checks[i + 1]
  local ok
  if kind == 'F' then
    ok = (redis.call('HGET', R .. rec, checks[i + 2]) or '') == checks[i + 3]
  elseif kind == 'E' then
    ok = redis.call('EXISTS', R .. rec) == 1
  else
    ok = redis.call('EXISTS', R .. rec) == 0
  end
  if not ok then
    return { 0, checks[i + 4], rec }
  end
end

-- Integers -------------------------------------------------------------------
-- Below 2^52 in magnitude a Lua number (exact, and so is the sum of two);
-- beyond, a canonical decimal string ("-12345678901234567890") added digit by
-- digit by the helpers bigmath() makes on first use (most plans never do).

local LIMIT = 4503599627370496 -- 2^52

local function int(v) -- a stored field as an integer (missing or "" is 0); nil if not one
  if not v or v == '' then
    return 0
  end
  if #v <= 15 and not find(v, '[^%d%-]') then
    local n = tonumber(v)
    if n and n == floor(n) then
      return n
    end
  end
  local sign, digits = match(v, '^(%-?)0*(%d+)$')
  if not sign then
    return nil
  end
  if #digits <= 15 then
    return tonumber(sign .. digits)
  end
  return sign .. digits
end

local function text(x) -- decimal, as stored
  if type(x) == 'number' then
    return format('%d', x)
  end
  return x
end

local function bigmath()
  local function mag_cmp(x, y) -- digit strings without leading zeros
    if #x ~= #y then
      return #x < #y and -1 or 1
    end
    if x == y then
      return 0
    end
    return x < y and -1 or 1
  end
  local function mag_add(x, y)
    local out, carry, i, j = {}, 0, #x, #y
    while i > 0 or j > 0 or carry > 0 do
      local s = carry + (i > 0 and byte(x, i) - 48 or 0) + (j > 0 and byte(y, j) - 48 or 0)
      carry = s >= 10 and 1 or 0
      out[#out + 1] = s % 10
      i, j = i - 1, j - 1
    end
    return string.reverse(table.concat(out))
  end
  local function mag_sub(x, y) -- x >= y
    local out, borrow, i, j = {}, 0, #x, #y
    while i > 0 do
      local s = byte(x, i) - 48 - borrow - (j > 0 and byte(y, j) - 48 or 0)
      if s < 0 then
        s, borrow = s + 10, 1
      else
        borrow = 0
      end
      out[#out + 1] = s
      i, j = i - 1, j - 1
    end
    return (match(string.reverse(table.concat(out)), '^0*(%d+)$'))
  end
  return function(a, b) -- canonical decimal strings -> their sum (a number if small)
    local an, bn = byte(a, 1) == 45, byte(b, 1) == 45
    local am, bm = an and strsub(a, 2) or a, bn and strsub(b, 2) or b
    local r, minus
    if an == bn then
      r, minus = mag_add(am, bm), an
    else
      local c = mag_cmp(am, bm)
      if c == 0 then
        return 0
      elseif c > 0 then
        r, minus = mag_sub(am, bm), an
      else
        r, minus = mag_sub(bm, am), bn
      end
    end
    if #r <= 15 then
      r = tonumber(r)
      return minus and -r or r
    end
    return minus and '-' .. r or r
  end
end
local big_add = nil

local function add(a, b)
  if type(a) == 'number' and type(b) == 'number' then
    local r = a + b
    if r < LIMIT and r > -LIMIT then
      return r
    end
    return format('%d', r) -- exact: both were below 2^52
  end
  big_add = big_add or bigmath()
  return big_add(text(a), text(b))
end

local function neg(a)
  if type(a) == 'number' then
    return -a
  elseif byte(a, 1) == 45 then
    return strsub(a, 2)
  end
  return '-' .. a
end

local function below(a, b) -- a < b
  if type(a) == 'number' and type(b) == 'number' then
    return a < b
  end
  local d = add(a, neg(b))
  if type(d) == 'number' then
    return d < 0
  end
  return byte(d, 1) == 45
end

local function not_integer(rec, field, v)
  return { -1, format('%s field %s holds %q, not an integer', rec, field, tostring(v)) }
end

-- 3. Moves -------------------------------------------------------------------

local puts = plan[6]
local created = {}
for i = 1, #puts, 2 do
  created[puts[i]] = true
end

local raw = {}     -- record -> asset -> stored text (false: no such field)
local found = {}   -- record -> true: it exists
local bal = {}     -- record -> asset -> balance, as moved so far
local dirty = {}   -- record -> asset -> true: a move changed it
local dirty_recs = {}

local function stored(rec, asset)
  local row = raw[rec]
  if not row then
    row = {}
    raw[rec] = row
  end
  local v = row[asset]
  if v == nil then
    v = redis.call('HGET', R .. rec, asset)
    row[asset] = v
    if v then
      found[rec] = true
    end
  end
  return v
end

local function exists(rec, asset)
  if found[rec] or created[rec] or stored(rec, asset) then
    return true
  end
  if redis.call('EXISTS', R .. rec) == 1 then
    found[rec] = true
    return true
  end
  return false
end

local function balance(rec, asset) -- nil if the field holds no integer
  local row = bal[rec]
  if not row then
    row = {}
    bal[rec] = row
  end
  local v = row[asset]
  if v == nil then
    v = int(stored(rec, asset))
    row[asset] = v
  end
  return v
end

local function set_balance(rec, asset, v)
  bal[rec][asset] = v
  local d = dirty[rec]
  if not d then
    d = {}
    dirty[rec] = d
    dirty_recs[#dirty_recs + 1] = rec
  end
  d[asset] = true
end

local moves = plan[5]
local amounts = {} -- per move: what it moved (0: nothing)
for i = 1, #moves, 6 do
  local debit, credit, asset, amount = moves[i], moves[i + 1], moves[i + 2], moves[i + 3]
  local drec, crec = 'a:' .. debit, 'a:' .. credit
  if not exists(drec, asset) then
    return { 0, 'NOT_FOUND', debit }
  end
  if not exists(crec, asset) then
    return { 0, 'NOT_FOUND', credit }
  end
  local have = balance(drec, asset)
  if not have then
    return not_integer(drec, asset, raw[drec][asset])
  end
  if type(amount) == 'string' then
    amount = int(amount)
  end
  if moves[i + 5] == 1 and below(have, amount) then -- cap: min(amount, max(have, 0))
    amount = below(have, 0) and 0 or have
  end
  if not below(0, amount) then
    amounts[#amounts + 1] = 0
  else
    local left = add(have, neg(amount))
    if debit ~= ISSUANCE and below(left, 0) then
      return { 0, moves[i + 4], debit }
    end
    set_balance(drec, asset, left)
    local got = balance(crec, asset)
    if not got then
      return not_integer(crec, asset, raw[crec][asset])
    end
    set_balance(crec, asset, add(got, amount))
    amounts[#amounts + 1] = amount
  end
end

-- Adds: their results, on an overlay of the writes before each -----------------

local ops = plan[7]
local added = {} -- position in ops -> the field's new value
local has_add = false
for i = 1, #ops do
  if ops[i] == 'A' then
    has_add = true
    break
  end
end
if has_add then
  local put = {} -- record -> field -> value (the last Put wins)
  for i = 1, #puts, 2 do
    local row = put[puts[i]] or {}
    local fields = puts[i + 1]
    for j = 1, #fields, 2 do
      row[fields[j]] = fields[j + 1]
    end
    put[puts[i]] = row
  end
  local sim = {} -- record -> {fields = {...}} after an Add or a Delete ({gone = true})
  local i = 1
  while i <= #ops do
    local op = ops[i]
    if op == 'A' then
      local rec, field = ops[i + 1], ops[i + 2]
      local s = sim[rec]
      local v = s and s.fields[field]
      if v == nil and not (s and s.gone) then
        if dirty[rec] and dirty[rec][field] then
          v = bal[rec][field]
        elseif put[rec] and put[rec][field] then
          v = put[rec][field]
        else
          v = redis.call('HGET', R .. rec, field)
        end
      end
      local n = v
      if type(v) ~= 'number' then
        n = int(v)
        if not n then
          return not_integer(rec, field, v)
        end
      end
      local delta = ops[i + 3]
      if type(delta) == 'string' then
        delta = int(delta)
      end
      if not s then
        s = { fields = {} }
        sim[rec] = s
      end
      s.fields[field] = add(n, delta)
      added[i] = s.fields[field]
      i = i + 4
    elseif op == 'D' then
      sim[ops[i + 1]] = { fields = {}, gone = true }
      i = i + 2
    elseif op == 'I' then
      i = i + 4
    else
      i = i + 3
    end
  end
end

-- 4. Writes (nothing can refuse or fail from here on) ---------------------------

for k = 1, #amounts do
  amounts[k] = text(amounts[k])
end

local seq = '0'
if head ~= '' then
  seq = format('%d', redis.call('INCR', B .. ':seq'))
  local quoted = {}
  local function json(s) -- a JSON string (cjson only for text that needs escapes)
    local q = quoted[s]
    if not q then
      if find(s, '[%c"\\/\128-\255]') then
        q = cjson.encode(s)
      else
        q = '"' .. s .. '"'
      end
      quoted[s] = q
    end
    return q
  end
  local parts = {}
  local accounts = {}
  for k = 1, #amounts do
    local amount = amounts[k]
    if amount ~= '0' then
      local j = 6 * k - 5
      local debit, credit, asset = moves[j], moves[j + 1], json(moves[j + 2])
      parts[#parts + 1] = '[' .. json(debit) .. ',' .. asset .. ',-' .. amount .. '],['
        .. json(credit) .. ',' .. asset .. ',' .. amount .. ']'
      if not accounts[debit] then
        accounts[debit] = true
        accounts[#accounts + 1] = debit
      end
      if not accounts[credit] then
        accounts[credit] = true
        accounts[#accounts + 1] = credit
      end
    end
  end
  redis.call('XADD', B .. ':ledger', seq .. '-0',
    'e', head .. ',"postings":[' .. table.concat(parts, ',') .. ']}')
  local also = plan[9]
  for k = 1, #also do
    local account = also[k]
    if not accounts[account] then
      accounts[account] = true
      accounts[#accounts + 1] = account
    end
  end
  local L = B .. ':l:'
  for k = 1, #accounts do
    redis.call('ZADD', L .. accounts[k], seq, seq)
  end
end

for i = 1, #puts, 2 do
  local fields = puts[i + 1]
  local n = #fields
  local j = 1
  while j <= n do -- 500 pairs per call: unpack() of a huge list overflows the C stack
    local last = math.min(j + 999, n)
    redis.call('HSET', R .. puts[i], unpack(fields, j, last))
    j = last + 1
  end
end

for k = 1, #dirty_recs do
  local rec = dirty_recs[k]
  local row = bal[rec]
  local args = {}
  for asset in pairs(dirty[rec]) do
    args[#args + 1] = asset
    args[#args + 1] = text(row[asset])
  end
  redis.call('HSET', R .. rec, unpack(args))
end

do
  local I = B .. ':i:'
  local i = 1
  while i <= #ops do
    local op = ops[i]
    if op == 'A' then
      redis.call('HSET', R .. ops[i + 1], ops[i + 2], text(added[i]))
      i = i + 4
    elseif op == 'D' then
      redis.call('DEL', R .. ops[i + 1])
      i = i + 2
    elseif op == 'I' then
      redis.call('ZADD', I .. ops[i + 1], ops[i + 3], ops[i + 2])
      i = i + 4
    else
      redis.call('ZREM', I .. ops[i + 1], ops[i + 2])
      i = i + 3
    end
  end
end

-- 5. The result ------------------------------------------------------------------

local names = plan[8]
local records = {}
for k = 1, #names do
  records[#records + 1] = names[k]
  records[#records + 1] = redis.call('HGETALL', R .. names[k])
end
local result = cjson.encode({ plan[2], seq, amounts, records })
if idem_key and plan[3] ~= '0' then
  redis.call('SET', idem_key, result, 'PX', plan[3])
end
return { 1, result }
