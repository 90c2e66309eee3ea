"""The Lua scripts of the Redis state backend (switch/state/redis.py explains the keys and
why each write is one script: atomic, idempotent, one round trip). Each script's KEYS and ARGV
are given in the comment above it."""

# KEYS: b, o, bx   ARGV: contact, json, expires_at, member, ttl
PUT = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  local last = redis.call('ZREVRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  local n = 1
  if last[2] then n = tonumber(last[2]) + 1 end
  redis.call('ZADD', KEYS[2], n, ARGV[1])
end
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])
local ttl = tonumber(ARGV[5])
for i = 1, 3 do
  if redis.call('TTL', KEYS[i]) < ttl then redis.call('EXPIRE', KEYS[i], ttl) end
end
return 1
"""

# KEYS: b, o, bx   ARGV: contact, member
REMOVE = """
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
return 1
"""

# KEYS: b, o, bx [, l, lx]   ARGV: dev
# Drops every binding of the device; with the two lock keys, the lock too (release_device).
REMOVE_ALL = """
local contacts = redis.call('HKEYS', KEYS[1])
local head = string.len(ARGV[1]) .. ':' .. ARGV[1]
for _, contact in ipairs(contacts) do redis.call('ZREM', KEYS[3], head .. contact) end
redis.call('DEL', KEYS[1], KEYS[2])
if KEYS[5] then
  redis.call('DEL', KEYS[4])
  redis.call('ZREM', KEYS[5], ARGV[1])
end
return #contacts
"""

# KEYS: b, o, bx   ARGV: contact, member, now
# Only if the deadline is still <= now: a binding refreshed meanwhile stays.
EXPIRE_BINDING = """
local s = redis.call('ZSCORE', KEYS[3], ARGV[2])
if not s or tonumber(s) > tonumber(ARGV[3]) then return 0 end
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
"""

# KEYS: l, lx   ARGV: dev, now
EXPIRE_LOCK = """
local s = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not s or tonumber(s) > tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: l, lx   ARGV: dev, owner, until, now, ttl
CLAIM = """
local cur = redis.call('HMGET', KEYS[1], 'owner', 'until')
if cur[1] and cur[1] ~= ARGV[2] and tonumber(cur[2]) > tonumber(ARGV[4]) then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'until', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[5]) then redis.call('EXPIRE', KEYS[2], ARGV[5]) end
return 1
"""

# KEYS: l, lx   ARGV: dev, owner
UNCLAIM = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: ch   ARGV: call_id, limit, deadline, now, ttl, late bound, sent at
# -1: the command arrived more than `late bound` seconds after it was sent (Redis's clock)
_TAKE_LEASE = """
local t = redis.call('TIME')
if tonumber(t[1]) + tonumber(t[2]) / 1000000 - tonumber(ARGV[7]) > tonumber(ARGV[6]) then
  return -1
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[5]) then redis.call('EXPIRE', KEYS[1], ARGV[5]) end
"""
ACQUIRE = _TAKE_LEASE + "return 1\n"

# KEYS: ch   ARGV: call_id, deadline, now, ttl
_EXTEND_LEASE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('EXPIRE', KEYS[1], ARGV[4]) end
"""
REFRESH = _EXTEND_LEASE + "return 1\n"

# KEYS: ch   ARGV: now
IN_USE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZCARD', KEYS[1])
"""


def _take_also(k: int, deadline: int, now: int, ttl: int) -> str:
    """Lua taking or extending the `also` lease KEYS[k] (when given) of the call ARGV[1] to
    ARGV[deadline]: it never refuses (leases.also_count)."""
    return (
        f"if KEYS[{k}] then\n"
        f"  redis.call('ZREMRANGEBYSCORE', KEYS[{k}], '-inf', ARGV[{now}])\n"
        f"  redis.call('ZADD', KEYS[{k}], ARGV[{deadline}], ARGV[1])\n"
        f"  if redis.call('TTL', KEYS[{k}]) < tonumber(ARGV[{ttl}]) then"
        f" redis.call('EXPIRE', KEYS[{k}], ARGV[{ttl}]) end\n"
        "end\n"
    )


def _put_record(c: int, cs: int, json: int, until: int, ttl: int) -> str:
    """Lua writing a call record: KEYS[c] = ARGV[json] for ARGV[ttl] s, ARGV[1] (the Call-ID)
    in the tenant's index KEYS[cs] at score ARGV[until]."""
    return (
        f"redis.call('SET', KEYS[{c}], ARGV[{json}], 'EX', ARGV[{ttl}])\n"
        f"redis.call('ZADD', KEYS[{cs}], ARGV[{until}], ARGV[1])\n"
        f"if redis.call('TTL', KEYS[{cs}]) < tonumber(ARGV[{ttl}]) then"
        f" redis.call('EXPIRE', KEYS[{cs}], ARGV[{ttl}]) end\n"
    )


# KEYS: c, cs   ARGV: call_id, json, until, ttl
PUT_CALL = _put_record(1, 2, json=2, until=3, ttl=4) + "return 1\n"

# The combined lease + record scripts (base.py, Calls): one round trip per change of a call.
# KEYS: ch, c, cs [, also ch]   ARGV: call_id, limit, deadline, now, ttl, late bound, sent at,
#                                   json, record until, record ttl
# -1 refused as late, 0 no free channel (nothing written), 1 lease(s) and record written
ACQUIRE_CALL = (
    _TAKE_LEASE
    + _take_also(4, deadline=3, now=4, ttl=5)
    + _put_record(2, 3, json=8, until=9, ttl=10)
    + "return 1\n"
)

# ACQUIRE_CALL counting the call in the day's counters when it took the lease (a device's
# outbound call, base.DailyCount): one round trip for both.
# KEYS: ch, c, cs [, also ch], counters...   ARGV: ACQUIRE_CALL's 10, counter TTL, the index
# of the first counter in KEYS (5 with an also lease, else 4)
ACQUIRE_CALL_COUNTED = (
    _TAKE_LEASE
    + "if tonumber(ARGV[12]) > 4 then\n"
    + _take_also(4, deadline=3, now=4, ttl=5)
    + "end\n"
    + _put_record(2, 3, json=8, until=9, ttl=10)
    + """for i = tonumber(ARGV[12]), #KEYS do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], ARGV[11])
end
return 1
"""
)

# KEYS: ch, c, cs [, also ch]   ARGV: call_id, deadline, now, ttl, json, record until, record ttl
# Nothing when the lease is gone: a refresh never takes a lease again (leases.py does, when
# the call still holds it, by `acquire_call`).
REFRESH_CALL = (
    _EXTEND_LEASE
    + _take_also(4, deadline=2, now=3, ttl=4)
    + _put_record(2, 3, json=5, until=6, ttl=7)
    + "return 1\n"
)

# KEYS: per call 3 or 4 of REFRESH_CALL's   ARGV: n, then per call: its key count (3 or 4)
# and REFRESH_CALL's 7 ARGV.   Returns each call's REFRESH_CALL result, in order.
# Several refreshes in one round trip (RedisState.refresh_call_later); each is exactly
# REFRESH_CALL, run as a function whose KEYS and ARGV are that call's.
REFRESH_CALLS = (
    "local function one(KEYS, ARGV)\n"
    + REFRESH_CALL
    + """end
local out, k, a = {}, 0, 1
for i = 1, tonumber(ARGV[1]) do
  local nk = tonumber(ARGV[a + 1])
  local keys, args = {}, {}
  for j = 1, nk do keys[j] = KEYS[k + j] end
  for j = 1, 7 do args[j] = ARGV[a + 1 + j] end
  out[i] = one(keys, args)
  k, a = k + nk, a + 8
end
return out
"""
)

# KEYS: ch, c [, also ch]   ARGV: call_id, tenant index prefix
# The record's own tenant names its index (as REMOVE_CALL).
RELEASE_CALL = """
local n = redis.call('ZREM', KEYS[1], ARGV[1])
if KEYS[3] then redis.call('ZREM', KEYS[3], ARGV[1]) end
local v = redis.call('GET', KEYS[2])
if v then
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', ARGV[2] .. cjson.decode(v)['tenant_id'], ARGV[1])
end
return n
"""

# KEYS: cs, ch   ARGV: now, record key prefix
# The tenant's records (JSON) of calls whose lease is live; the others are dropped (a record
# a write raced back after its release, a lease that expired).
CALLS = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local out = {}
for _, id in ipairs(ids) do
  local v = redis.call('GET', ARGV[2] .. id)
  local lease = redis.call('ZSCORE', KEYS[2], id)
  if v and lease and tonumber(lease) > tonumber(ARGV[1]) then
    out[#out + 1] = v
  else
    redis.call('ZREM', KEYS[1], id)
    redis.call('DEL', ARGV[2] .. id)
  end
end
return out
"""

# KEYS: c   ARGV: call_id, tenant index prefix
REMOVE_CALL = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local tenant = cjson.decode(v)['tenant_id']
redis.call('DEL', KEYS[1])
redis.call('ZREM', ARGV[2] .. tenant, ARGV[1])
return 1
"""
