"""Every Lua script the dialer runs, each with the one Python function that calls it.

Each script opens with a header listing its KEYS and ARGV slots and its
reply; the wrapper below it fills exactly those slots and turns the reply
into Python values. As in rq's ``scripts.py``, a script is registered once
per client and runs with EVALSHA (loaded again if the server lost it).

Key names are the caller's (``store.Store`` builds them from ``keys.Keys``).
The states written into in-flight records are ``lifecycle.ClaimState``
values passed as ARGV, so no state string is spelled in Lua; the record's
fields are those of ``claim.Claim.to_record`` (the store contract tests check
that the two agree).
"""
import weakref
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import orjson
import redis
from redis.commands.core import Script

from .lifecycle import ClaimState
from .model import as_text

# Script replies that are not claim states.
OK = "ok"
EMPTY = "empty"            # CLAIM_NUMBERS: no number waiting
NO_LINE = "no_line"        # CLAIM_NUMBERS: every line full
GONE = "gone"              # CLAIM_SCHEDULED: not in the set, or not due
REQUEUED = "requeued"      # CLAIM_SCHEDULED: no line, written back for later
DNC = "dnc"                # MARK_SENT: the number is on the do-not-call list
DUPLICATE = "duplicate"    # MARK_SENT: another claim holds the same idempotency id

# Line groups as the claim scripts take them: per group, in order of
# preference, its (line name, limit) pairs.
LineGroups = Sequence[Sequence[Tuple[str, int]]]

_registered: "weakref.WeakKeyDictionary[redis.Redis, Dict[str, Script]]" = weakref.WeakKeyDictionary()


def _script(client: redis.Redis, source: str) -> Script:
    """``source`` registered on ``client``: its SHA is computed once per client, not per call."""
    try:
        return _registered[client][source]
    except KeyError:
        script = _registered.setdefault(client, {})[source] = client.register_script(source)
        return script


def _group_args(groups: LineGroups) -> List:
    """ARGV for line groups: G, then per group n and n (line name, limit) pairs."""
    out = [len(groups)]
    for group in groups:
        out.append(len(group))
        for name, limit in group:
            out.extend((name, limit))
    return out


# Claim numbers from a task's queue together with a line slot for each.
#
# KEYS[1]      number queue (list; upstream LPUSHes, so the oldest is on the right)
# KEYS[2]      this host's in-flight hash
# KEYS[3]      the task's redial sorted set (score = due time); due redials go first
# KEYS[4..]    line lease sorted sets, one per candidate line, in ARGV order
# ARGV[1]      now (unix seconds)
# ARGV[2]      lease expiry (unix seconds)
# ARGV[3]      task name (copied into the in-flight record)
# ARGV[4]      state of the new records (ClaimState.CLAIMED)
# ARGV[5]      number of line groups G
# then for each group: n, followed by n pairs (line name, line limit)
# then the claim ids to use, one per number wanted (their count is the batch)
#
# Returns {status, id1, raw1, line1, group1, from1, id2, ...}; from is "list"
# or "zset" (a redial member); status is "ok",
# "empty" (no number waiting) or "no_line" (every line full). A number is
# popped only when a line slot is taken for it in the same step, and is in
# the in-flight hash before the script returns: a crash can never lose it.
# Within a group the least-loaded line (count / limit) is chosen.
CLAIM_NUMBERS = r"""
local now = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2])
local task = ARGV[3]
local claimed = ARGV[4]
local ngroups = tonumber(ARGV[5])
local groups = {}
local bykey = {}
local a = 6
local k = 4
for g = 1, ngroups do
  local n = tonumber(ARGV[a]); a = a + 1
  local lines = {}
  for i = 1, n do
    local key = KEYS[k]; k = k + 1
    -- A line listed in two groups is one line: share its count.
    if not bykey[key] then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
      bykey[key] = {key = key, name = ARGV[a], limit = tonumber(ARGV[a + 1]),
                    count = redis.call('ZCARD', key)}
    end
    lines[i] = bykey[key]
    a = a + 2
  end
  groups[g] = lines
end
local out = {'ok'}
for idx = a, #ARGV do
  local best, bestg = nil, nil
  for g = 1, ngroups do
    for _, line in ipairs(groups[g]) do
      if line.count < line.limit and (best == nil or line.count / line.limit < best.count / best.limit) then
        best = line
      end
    end
    if best then bestg = g; break end
  end
  if not best then
    if #out == 1 then out[1] = 'no_line' end
    return out
  end
  local raw, from, source, score = nil, 'list', KEYS[1], 0
  local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
  if #due > 0 then
    raw, from, source, score = due[1], 'zset', KEYS[3], tonumber(due[2])
    redis.call('ZREM', KEYS[3], raw)
  else
    raw = redis.call('RPOP', KEYS[1])
  end
  if not raw then
    if #out == 1 then out[1] = 'empty' end
    return out
  end
  local id = ARGV[idx]
  redis.call('ZADD', best.key, expiry, id)
  best.count = best.count + 1
  redis.call('HSET', KEYS[2], id, cjson.encode({kind = 'queue', task = task, queue = source, back = from,
    raw = raw, score = score, line = best.name, group = bestg - 1, state = claimed, claimed_at = now}))
  table.insert(out, id); table.insert(out, raw); table.insert(out, best.name); table.insert(out, bestg - 1)
  table.insert(out, from)
end
return out
"""


class Claimed(NamedTuple):
    """A number CLAIM_NUMBERS took, with its line slot."""
    claim_id: str
    raw: bytes
    line: str
    group: int          # index into the task's line groups
    origin: str         # "list" (the queue) or "zset" (a due redial member)


def claim_numbers(client, *, queue: str, inflight: str, redials: str, leases: Sequence[str], groups: LineGroups,
                  task: str, claim_ids: Sequence[str], now: float, expiry: float) -> Tuple[str, List[Claimed]]:
    """Run CLAIM_NUMBERS: up to len(claim_ids) numbers, each recorded "claimed" with a line slot.

    ``leases`` are the lease keys of the lines of ``groups``, in the same
    order. Returns (OK, EMPTY or NO_LINE, the numbers taken); the status
    says why the batch stopped short, if it did.
    """
    reply = _script(client, CLAIM_NUMBERS)(
        keys=[queue, inflight, redials, *leases],
        args=[now, expiry, task, ClaimState.CLAIMED.value, *_group_args(groups), *claim_ids])
    items = [Claimed(as_text(reply[i]), reply[i + 1], as_text(reply[i + 2]), int(reply[i + 3]),
                     as_text(reply[i + 4])) for i in range(1, len(reply), 5)]
    return as_text(reply[0]), items


# Shared by the scripts below: take a slot on the least-loaded line of the
# first group that has one (expired leases are pruned first).
# take_line(now, expiry, id, first_key, groups_argv) reads the line lease keys
# from KEYS[first_key..] and, from ARGV[groups_argv], the group count G then
# per group: n, then n (line name, limit) pairs. Returns line name and 0-based
# group index, or nil when every line is full.
TAKE_LINE = r"""
local function take_line(now, expiry, id, first_key, groups_argv)
  local a = groups_argv
  local k = first_key
  local ngroups = tonumber(ARGV[a]); a = a + 1
  for g = 1, ngroups do
    local n = tonumber(ARGV[a]); a = a + 1
    local best = nil
    for i = 1, n do
      local key = KEYS[k]; k = k + 1
      redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
      local count = redis.call('ZCARD', key)
      local limit = tonumber(ARGV[a + 1])
      if count < limit and (best == nil or count / limit < best.ratio) then
        best = {key = key, name = ARGV[a], ratio = count / limit}
      end
      a = a + 2
    end
    if best then
      redis.call('ZADD', best.key, expiry, id)
      return best.name, g - 1
    end
  end
  return nil
end
"""

# Reserve a slot on the least-loaded line of the first group that has one.
#
# KEYS[1..]    line lease sorted sets, in ARGV order
# ARGV[1]      now, ARGV[2] lease expiry, ARGV[3] claim id
# ARGV[4]      number of groups G, then per group: n, then n (line name, limit) pairs
# Returns {line name, group index} or an empty reply when every line is full.
RESERVE_LINE = TAKE_LINE + r"""
local now = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2])
local id = ARGV[3]
local line, group = take_line(now, expiry, id, 1, 4)
if line then return {line, group} end
return {}
"""


def reserve_line(client, *, leases: Sequence[str], groups: LineGroups, claim_id: str, now: float,
                 expiry: float) -> Optional[Tuple[str, int]]:
    """Run RESERVE_LINE: (line, group index) of the slot taken for ``claim_id``, or None when all are full."""
    reply = _script(client, RESERVE_LINE)(keys=leases, args=[now, expiry, claim_id, *_group_args(groups)])
    if not reply:
        return None
    return as_text(reply[0]), int(reply[1])


# Claim one due schedule member: with a line slot, or apply the seed's rule.
#
# KEYS[1]      schedule sorted set (score = unix time to call)
# KEYS[2]      this host's in-flight hash
# KEYS[3..]    line lease sorted sets, in ARGV order
# ARGV[1]      now, ARGV[2] lease expiry, ARGV[3] member, ARGV[4] claim id
# ARGV[5]      expires (unix time, 0 = never), ARGV[6] write-back delay (60)
# ARGV[7]      schedule config name
# ARGV[8]      the states to record: claimed, ARGV[9] expired, ARGV[10] dropped
# ARGV[11]     number of groups G, then per group: n, then n (line name, limit) pairs
#
# Returns one of
#   {"gone"}                 not in the set or not due (another daemon took it)
#   {"ok", line, group}      removed from the set, lease taken, in-flight ARGV[8]
#   {ARGV[9]}                past expires: removed, in-flight ARGV[9]
#   {"requeued", score}      no free line: written back at now + delay
#   {ARGV[10]}               no free line and expires is 0 or too close: removed,
#                            in-flight ARGV[10]
# Every outcome that removes the member leaves it in the in-flight hash, so a
# crash before its result is written loses nothing.
CLAIM_SCHEDULED = TAKE_LINE + r"""
local now = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2])
local member = ARGV[3]
local id = ARGV[4]
local expires = tonumber(ARGV[5])
local delay = tonumber(ARGV[6])
local claimed, expired, dropped = ARGV[8], ARGV[9], ARGV[10]
local score = redis.call('ZSCORE', KEYS[1], member)
if not score or tonumber(score) > now then return {'gone'} end
local function park(state, line, group)
  redis.call('ZREM', KEYS[1], member)
  redis.call('HSET', KEYS[2], id, cjson.encode({kind = 'schedule', task = ARGV[7], queue = KEYS[1],
    back = 'zset', raw = member, score = tonumber(score), line = line, group = group, state = state,
    claimed_at = now}))
end
if expires > 0 and now > expires then park(expired, '', 0); return {expired} end
local line, group = take_line(now, expiry, id, 3, 11)
if line then
  park(claimed, line, group)
  return {'ok', line, group}
end
if expires > 0 and now + delay <= expires then
  redis.call('ZADD', KEYS[1], 'XX', now + delay, member)
  return {'requeued', tostring(now + delay)}
end
park(dropped, '', 0)
return {dropped}
"""

# (member, claim id, expires, schedule config name, line lease keys, line groups)
ScheduledItem = Tuple[bytes, str, float, str, Sequence[str], LineGroups]


def claim_scheduled(client, *, schedule: str, inflight: str, items: Sequence[ScheduledItem], now: float,
                    expiry: float, delay: float) -> List[Tuple[str, object, Optional[int]]]:
    """Run CLAIM_SCHEDULED for each item, all in one round trip.

    Per item: (OK, line, group index), (REQUEUED, new score, None), or
    (status, None, None) with status GONE, or the state the member was
    recorded in: ClaimState.EXPIRED or ClaimState.DROPPED's value.
    """
    script = _script(client, CLAIM_SCHEDULED)
    states = [ClaimState.CLAIMED.value, ClaimState.EXPIRED.value, ClaimState.DROPPED.value]
    pipe = client.pipeline(transaction=False)
    for member, claim_id, expires, config, leases, groups in items:
        script(keys=[schedule, inflight, *leases],
               args=[now, expiry, member, claim_id, expires, delay, config, *states, *_group_args(groups)],
               client=pipe)
    out = []
    for reply in pipe.execute():
        status = as_text(reply[0])
        if status == OK:
            out.append((status, as_text(reply[1]), int(reply[2])))
        elif status == REQUEUED:
            out.append((status, float(reply[1]), None))
        else:
            out.append((status, None, None))
    return out


# Take a malformed schedule member out of the set into the in-flight hash,
# only if it is still there.
#
# KEYS[1] schedule sorted set, KEYS[2] in-flight hash
# ARGV[1] member, ARGV[2] claim id, ARGV[3] now, ARGV[4] reason, ARGV[5] config name (may be ""),
# ARGV[6] state of the record (ClaimState.REJECTED)
# Returns 1 when taken, 0 when another daemon already did.
TAKE_REJECTED = r"""
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], cjson.encode({kind = 'schedule', task = ARGV[5], queue = KEYS[1],
  back = 'zset', raw = ARGV[1], score = tonumber(score), state = ARGV[6], reason = ARGV[4],
  claimed_at = tonumber(ARGV[3])}))
return 1
"""


def take_rejected(client, *, schedule: str, inflight: str, member: bytes, claim_id: str, now: float, reason: str,
                  config: str) -> bool:
    """Run TAKE_REJECTED: True when ``member`` moved into the in-flight hash as "rejected"."""
    return bool(_script(client, TAKE_REJECTED)(
        keys=[schedule, inflight], args=[member, claim_id, now, reason, config, ClaimState.REJECTED.value]))


# Put a claimed, never-dialed number back, once.
#
# KEYS[1] in-flight hash, KEYS[2] where it came from (queue list, or a sorted
# set: schedule or redials), KEYS[3] its line lease sorted set, KEYS[4] its
# idempotency key (KEYS[1] stands in for either when there is none)
# ARGV[1] claim id, ARGV[2] raw member, ARGV[3] "list" or "zset",
# ARGV[4] score (zset), ARGV[5] "1" when KEYS[3] is a lease to free,
# ARGV[6] "1" when KEYS[4] is an idempotency key to release
# Returns 1, or 0 when the claim was already settled: a retry after a lost
# reply can never push the number twice.
REQUEUE = r"""
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
if ARGV[3] == 'zset' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2])
else
  redis.call('RPUSH', KEYS[2], ARGV[2])
end
if ARGV[5] == '1' then redis.call('ZREM', KEYS[3], ARGV[1]) end
-- Never dialed: the id may be taken again, unless another claim holds it.
if ARGV[6] == '1' and redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
return 1
"""


def requeue(client, *, inflight: str, claim_id: str, home: str, raw: bytes, back: str, score: float,
            lease: Optional[str], seen: Optional[str]) -> bool:
    """Run REQUEUE: ``raw`` back into ``home`` ("list": taken next; "zset": at ``score``).

    ``lease`` and ``seen`` (the line lease key and idempotency key the claim
    holds, if any) are released. False when the claim was already settled.
    """
    return bool(_script(client, REQUEUE)(
        keys=[inflight, home, lease or inflight, seen or inflight],
        args=[claim_id, raw, back, score, "1" if lease else "0", "1" if seen else "0"]))


# Mark claims "sent" right before their originates, checking the do-not-call
# set and the idempotency keys at that last moment.
#
# KEYS[1] in-flight hash, KEYS[2] do-not-call set, KEYS[3..] idempotency keys
# ARGV[1] idempotency window (seconds), ARGV[2] claim count, then per claim:
# claim id, number, in-flight record JSON, idempotency key index (0 = none,
# i = KEYS[2 + i])
# Returns one status per claim: "ok" (marked sent), "dnc" (number listed) or
# "duplicate" (another claim took the same id within the window).
MARK_SENT = r"""
local out = {}
local a = 3
for i = 1, tonumber(ARGV[2]) do
  local id, number, record, seen = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  a = a + 4
  if redis.call('SISMEMBER', KEYS[2], number) == 1 then
    out[i] = 'dnc'
  elseif seen > 0 and not redis.call('SET', KEYS[2 + seen], id, 'NX', 'EX', ARGV[1])
         and redis.call('GET', KEYS[2 + seen]) ~= id then
    out[i] = 'duplicate'
  else
    redis.call('HSET', KEYS[1], id, record)
    out[i] = 'ok'
  end
end
return out
"""


def mark_sent(client, *, inflight: str, dnc: str, claims: Sequence[Tuple[str, str, Dict, Optional[str]]],
              window: float) -> List[str]:
    """Run MARK_SENT for (claim id, number, in-flight record, idempotency key or None) per claim.

    Returns OK, DNC or DUPLICATE per claim; only OK claims' records are written.
    """
    keys = [inflight, dnc]
    args = [int(window), len(claims)]
    for claim_id, number, record, seen in claims:
        index = 0
        if seen:
            keys.append(seen)
            index = len(keys) - 2
        args += [claim_id, number, orjson.dumps(record), index]
    return [as_text(x) for x in _script(client, MARK_SENT)(keys=keys, args=args)]


# End claims: drop the in-flight record, free the lease, append the result
# (and the rejected record), move the counters and schedule a redial, all
# only if the record is still there, so a retried batch never writes a result
# twice. Records travel as JSON arrays decoded here: packing a few dozen
# arguments per call in Python cost more than the whole rest of a call.
#
# KEYS[1] in-flight hash, KEYS[2] results stream, KEYS[3] rejected stream,
# KEYS[4..] other keys (line leases, counters, redial sets) referenced by
# index i = KEYS[3 + i] (0 = none)
# ARGV[1] results maxlen, ARGV[2] rejected maxlen, ARGV[3] item count, then
# 9 per item: claim id, lease index, result JSON array of field/value strings
# ("" = none), rejected JSON array ("" = none), counters index, counters JSON
# array of field/increment pairs, redial set index, redial score, redial member
# Returns how many items were written.
FINISH = r"""
local done = 0
local a = 4
for i = 1, tonumber(ARGV[3]) do
  local id, lease, res, rej = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3]
  local counters, cnt = tonumber(ARGV[a + 4]), ARGV[a + 5]
  local retry, retry_score, retry_member = tonumber(ARGV[a + 6]), ARGV[a + 7], ARGV[a + 8]
  a = a + 9
  if redis.call('HDEL', KEYS[1], id) == 1 then
    if lease > 0 then redis.call('ZREM', KEYS[3 + lease], id) end
    if counters > 0 then
      local pairs_ = cjson.decode(cnt)
      for j = 1, #pairs_, 2 do
        redis.call('HINCRBY', KEYS[3 + counters], pairs_[j], pairs_[j + 1])
      end
    end
    if retry > 0 then redis.call('ZADD', KEYS[3 + retry], retry_score, retry_member) end
    if rej ~= '' then
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', unpack(cjson.decode(rej)))
    end
    if res ~= '' then
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', unpack(cjson.decode(res)))
    end
    done = done + 1
  end
end
return done
"""


class Ending(NamedTuple):
    """One claim for FINISH to end; a None key (or empty mapping) means nothing of that kind."""
    claim_id: str
    lease: Optional[str]            # line lease key to free
    result: Optional[Dict]          # the result record
    rejected: Optional[Dict]        # the rejected record
    counters: Optional[str]         # counters hash key
    counts: Dict[str, int]          # field -> increment
    redial: Optional[str]           # redial sorted set key
    redial_score: float
    redial_member: str


def finish(client, *, inflight: str, results: str, rejected: str, results_maxlen: int, rejected_maxlen: int,
           endings: Sequence[Ending]) -> int:
    """Run FINISH: end every claim whose in-flight record is still there; returns how many."""
    keys = [inflight, results, rejected]
    index = {}

    def key_index(key):
        if not key:
            return 0
        if key not in index:
            keys.append(key)
            index[key] = len(keys) - 3
        return index[key]

    args = [results_maxlen, rejected_maxlen, len(endings)]
    for e in endings:
        args += [e.claim_id, key_index(e.lease), _flat_json(e.result) if e.result else "",
                 _flat_json(e.rejected) if e.rejected else "", key_index(e.counters),
                 orjson.dumps([x for kv in e.counts.items() for x in kv]) if e.counts else "[]",
                 key_index(e.redial), e.redial_score, e.redial_member]
    return _script(client, FINISH)(keys=keys, args=args)


def _flat_json(record: Dict) -> bytes:
    """A record as the JSON array [field, value, ...] of strings that FINISH unpacks.

    Called for every result: exact-type tests instead of as_fields'
    isinstance chain, for the types results are made of.
    """
    out = []
    for name, value in record.items():
        kind = type(value)
        if kind is str:
            pass
        elif kind is float:
            value = repr(value)
        elif kind is int:
            value = str(value)
        else:
            value = as_fields({name: value})[name]
        out.append(name)
        out.append(value)
    return orjson.dumps(out)


def as_fields(record: Dict) -> Dict[str, str]:
    """A record as the strings a stream entry or hash holds (None is "", booleans "1"/"0", JSON for the rest)."""
    out = {}
    for name, value in record.items():
        if value is None:
            value = ""
        elif isinstance(value, bool):
            value = "1" if value else "0"
        elif isinstance(value, (dict, list)):
            value = orjson.dumps(value).decode()
        elif isinstance(value, bytes):
            value = value.decode("utf-8", "backslashreplace")
        elif isinstance(value, float):
            value = repr(value)         # shortest exact form, as redis-py would write it
        elif not isinstance(value, str):
            value = str(value)
        out[name] = value
    return out


# Move up to N in-flight records of a host that is gone (no heartbeat) into
# ours, so that we settle them. The owner's heartbeat is checked in the same
# step, so a host that is back (or never left) keeps every record.
#
# KEYS[1] the gone host's in-flight hash, KEYS[2] ours, KEYS[3] its heartbeat key
# ARGV[1] N
# Returns the claim ids moved (empty when the owner is alive or had none).
TAKE_OVER = r"""
if redis.call('EXISTS', KEYS[3]) == 1 then return {} end
local ids = redis.call('HKEYS', KEYS[1])
local moved = {}
for i = 1, math.min(#ids, tonumber(ARGV[1])) do
  local record = redis.call('HGET', KEYS[1], ids[i])
  redis.call('HSET', KEYS[2], ids[i], record)
  redis.call('HDEL', KEYS[1], ids[i])
  moved[#moved + 1] = ids[i]
end
return moved
"""


def take_over(client, *, theirs: str, ours: str, heartbeat: str, count: int) -> List[str]:
    """Run TAKE_OVER: the claim ids moved from ``theirs`` to ``ours`` (none while ``heartbeat`` exists)."""
    return [as_text(x) for x in _script(client, TAKE_OVER)(keys=[theirs, ours, heartbeat], args=[count])]


# Push the expiry of live calls' line leases forward, only for claims whose
# in-flight record is still there: a renewal built just before a call ended
# must not bring back the lease its FINISH freed (it would hold a line slot
# until the lease expired).
#
# KEYS[1] this host's in-flight hash, KEYS[2..] one lease sorted set per claim
# ARGV[1] new expiry, ARGV[2..] the claim ids, in KEYS order
# Returns how many leases were renewed. A lease another host pruned while we
# were cut off comes back (plain ZADD), so the count matches the calls up.
RENEW_LEASES = r"""
local n = 0
for i = 2, #KEYS do
  local id = ARGV[i]
  if redis.call('HEXISTS', KEYS[1], id) == 1 then
    redis.call('ZADD', KEYS[i], ARGV[1], id)
    n = n + 1
  end
end
return n
"""


def renew_leases(client, *, inflight: str, leases: Sequence[Tuple[str, str]], expiry: float) -> int:
    """Run RENEW_LEASES for (lease key, claim id) pairs; returns how many were renewed."""
    if not leases:
        return 0
    return int(_script(client, RENEW_LEASES)(keys=[inflight] + [key for key, _ in leases],
                                             args=[expiry] + [cid for _, cid in leases]))


# Which idle tasks have work: a number in their queue or a due redial.
#
# KEYS pairs: (queue list, redial sorted set) per task; no ARGV: "now" is the
# server's clock.
# Returns the 1-based pair indexes that have something to claim. One call
# for every idle task: the cost of watching stays one round trip per poll.
HAS_WORK = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for i = 1, #KEYS, 2 do
  if redis.call('LLEN', KEYS[i]) > 0
      or #redis.call('ZRANGEBYSCORE', KEYS[i + 1], '-inf', now, 'LIMIT', 0, 1) > 0 then
    out[#out + 1] = (i + 1) / 2
  end
end
return out
"""


class WorkProbe:
    """HAS_WORK for one set of (queue, redial set) pairs, asked again and again.

    Polled up to a hundred times a second, so the key list is built (and
    encoded, which is most of redis-py's cost of packing the command) once
    per set, not per call.
    """

    def __init__(self, client, pairs: Iterable[Tuple[str, str]]):
        self.script = _script(client, HAS_WORK)
        self.keys = [key.encode() for pair in pairs for key in pair]

    def __call__(self) -> List[int]:
        """0-based indexes of the pairs whose queue has a number or whose redial set has a due member."""
        return [int(i) - 1 for i in self.script(keys=self.keys)]
