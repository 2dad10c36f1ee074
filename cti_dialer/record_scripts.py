"""The scripts that act on records a claim already made, and on the host's name.

Putting a number back, marking it sent, parking it, ending it, renewing its
line lease, moving it to its next line group, reporting what its call said
about its line, taking over a gone host's records, and holding this host's
name.
Each acts only while the record is there and the caller may act on it
(``may_act`` in ``scripts.RECORDS``) and otherwise answers ``lost``; the
claim scripts, the shared Lua and the status constants are in ``scripts.py``.
Same habits: a KEYS/ARGV header per script, one typed wrapper each.
"""
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import orjson

from .line_gates import LINES, group_args
from .model import as_text
from .scripts import OK, RECORDS, LineGroups, _script, _wake, encode_record


# Put a claimed, never-dialed number back, once, while its record is ours.
#
# KEYS[1] in-flight hash, KEYS[2] where it came from (queue list, or a sorted
# set: schedule or redials), KEYS[3] its line lease sorted set, KEYS[4] its
# idempotency key (KEYS[1] stands in for either when there is none),
# KEYS[5] this host's name key
# ARGV[1] claim id, ARGV[2] raw member, ARGV[3] "list" or "zset",
# ARGV[4] score (zset), ARGV[5] "1" when KEYS[3] is a lease to free,
# ARGV[6] "1" when KEYS[4] is an idempotency key to release,
# ARGV[7] our instance id
# Returns "ok", or "lost" when the record is gone (already settled: a retry
# after a lost reply can never push the number twice; or taken over) or is
# not ours to act on. The number is pushed before its record goes, so a push
# Redis refuses (a key of the wrong type) deletes nothing.
REQUEUE = RECORDS + r"""
if not may_act(ARGV[7], redis.call('GET', KEYS[5]), redis.call('HGET', KEYS[1], ARGV[1])) then
  return 'lost'
end
if ARGV[3] == 'zset' then
  -- A score that is not a finite number would make ZADD fail: due now instead.
  local score = ARGV[4]
  if not finite(tonumber(score)) then score = 0 end
  redis.call('ZADD', KEYS[2], score, ARGV[2])
else
  redis.call('RPUSH', KEYS[2], ARGV[2])
end
redis.call('HDEL', KEYS[1], ARGV[1])
if ARGV[5] == '1' then redis.call('ZREM', KEYS[3], ARGV[1]) end
-- Never dialed: the id may be taken again, unless another claim holds it.
if ARGV[6] == '1' and redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
return 'ok'
"""


def requeue(client, *, inflight: str, host_name: str, owner: str, claim_id: str, home: str, raw: bytes, back: str,
            score: float, lease: Optional[str], seen: Optional[str]) -> str:
    """Run REQUEUE: ``raw`` back into ``home`` ("list": taken next; "zset": at ``score``).

    ``lease`` and ``seen`` (the line lease key and idempotency key the claim
    holds, if any) are released. Returns OK, or LOST when the record is gone
    or not ours to act on (nothing was changed).
    """
    return as_text(_script(client, REQUEUE)(
        keys=[inflight, home, lease or inflight, seen or inflight, host_name],
        args=[claim_id, raw, back, score, "1" if lease else "0", "1" if seen else "0", owner]))


# Mark claims "sent" right before their originates, checking ownership, the
# do-not-call set and the idempotency keys at that last moment.
#
# KEYS[1] in-flight hash, KEYS[2] do-not-call set, KEYS[3] this host's name
# key, KEYS[4..] idempotency keys and daily attempt counters
# ARGV[1] idempotency window (seconds), ARGV[2] our instance id, ARGV[3] claim
# count, ARGV[4] attempts allowed per number per day (0 = no cap), then per
# claim: claim id, number, in-flight record JSON (owner first), idempotency
# key index (0 = none, i = KEYS[3 + i]), attempt counter index (0 = the try
# does not count: a failover or throttle re-send; i = KEYS[3 + i])
# Returns one status per claim: "ok" (marked sent), "lost" (the record is
# gone, or not ours to act on: taken over, requeued by a sweep, or this
# host's name is another instance's; nothing is written and no id is taken),
# "dnc" (number listed), "capped" (the number had its attempts for the day:
# nothing is written, no id is taken) or "duplicate" (another claim took the
# same id within the window). A fresh claim's record was written by its
# claim script, so it is checked like any.
MARK_SENT = RECORDS + r"""
local me = ARGV[2]
local cap = tonumber(ARGV[4])
local holder = redis.call('GET', KEYS[3])
local out = {}
local a = 5
for i = 1, tonumber(ARGV[3]) do
  local id, number, record = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local seen, counter = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  a = a + 5
  if not may_act(me, holder, redis.call('HGET', KEYS[1], id)) then
    out[i] = 'lost'
  elseif redis.call('SISMEMBER', KEYS[2], number) == 1 then
    out[i] = 'dnc'
  elseif seen > 0 and (redis.call('GET', KEYS[3 + seen]) or id) ~= id then
    -- A duplicate is one whatever the cap says: it is dropped, not deferred.
    out[i] = 'duplicate'
  elseif cap > 0 and counter > 0 and (tonumber(redis.call('GET', KEYS[3 + counter])) or 0) >= cap then
    out[i] = 'capped'
  elseif seen > 0 and not redis.call('SET', KEYS[3 + seen], id, 'NX', 'EX', ARGV[1])
         and redis.call('GET', KEYS[3 + seen]) ~= id then
    out[i] = 'duplicate'
  else
    if cap > 0 and counter > 0 then
      -- Two days: the key names its day, so it only has to outlive it.
      if redis.call('INCR', KEYS[3 + counter]) == 1 then redis.call('EXPIRE', KEYS[3 + counter], 172800) end
    end
    redis.call('HSET', KEYS[1], id, record)
    out[i] = 'ok'
  end
end
return out
"""


def mark_sent(client, *, inflight: str, dnc: str, host_name: str, owner: str,
              claims: Sequence[Tuple[str, str, Dict, Optional[str], Optional[str]]], window: float,
              cap: int = 0) -> List[str]:
    """Run MARK_SENT for (claim id, number, in-flight record, idempotency key or None,
    attempt counter key or None) per claim.

    Returns OK, LOST, DNC, CAPPED or DUPLICATE per claim; only OK claims'
    records are written, each with ``owner`` as its owner.
    """
    keys = [inflight, dnc, host_name]
    args = [int(window), owner, len(claims), cap]

    def index_of(key):
        if not key:
            return 0
        keys.append(key)
        return len(keys) - 3

    for claim_id, number, record, seen, counter in claims:
        args += [claim_id, number, encode_record(owner, record), index_of(seen), index_of(counter)]
    return [as_text(x) for x in _script(client, MARK_SENT)(keys=keys, args=args)]


# Give back an attempt the daily cap counted for a number that went back unrung.
# KEYS[1] the counter. Returns the count left. Never below 0, never creates the key.
GIVE_BACK_ATTEMPT = r"""
local n = tonumber(redis.call('GET', KEYS[1]))
if n and n > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"""


def give_back_attempt(client, *, counter: str) -> int:
    """Run GIVE_BACK_ATTEMPT."""
    return int(_script(client, GIVE_BACK_ATTEMPT)(keys=[counter]))


# Rewrite a claim's in-flight record (parked between two tries), only while
# the record is there and ours.
#
# KEYS[1] in-flight hash, KEYS[2] this host's name key
# ARGV[1] our instance id, ARGV[2] claim id, ARGV[3] the record JSON (owner first),
# ARGV[4] the call uuid the record must still hold ("" = any): a rewrite
# delayed behind a later try's mark-sent must not undo it
# Returns "ok", "lost" (gone or not ours to act on) or "stale" (another try's
# record by now); nothing is written unless "ok".
UPDATE_RECORD = RECORDS + r"""
local current = redis.call('HGET', KEYS[1], ARGV[2])
if not may_act(ARGV[1], redis.call('GET', KEYS[2]), current) then
  return 'lost'
end
if ARGV[4] ~= '' then
  local ok, doc = pcall(cjson.decode, current)
  if not ok or type(doc) ~= 'table' or doc.uuid ~= ARGV[4] then return 'stale' end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
return 'ok'
"""


def update_record(client, *, inflight: str, host_name: str, owner: str, claim_id: str, record: Dict,
                  expected_uuid: str = "") -> str:
    """Run UPDATE_RECORD: OK when the record was rewritten, LOST when it is no longer ours, STALE
    when ``expected_uuid`` is given and the record holds another try by now."""
    return as_text(_script(client, UPDATE_RECORD)(keys=[inflight, host_name],
                                                  args=[owner, claim_id, encode_record(owner, record),
                                                        expected_uuid]))


# End claims: drop the in-flight record, free the lease, append the result
# (and the rejected record), move the counters and schedule a redial, all
# only if the record is still there and ours, so a retried batch never writes
# a result twice and a host that lost a claim never records it. Records
# travel as JSON arrays decoded here: packing a few dozen arguments per call
# in Python cost more than the whole rest of a call.
#
# KEYS[1] in-flight hash, KEYS[2] results stream, KEYS[3] rejected stream,
# KEYS[4] this host's name key, KEYS[5..] other keys (line leases, counters,
# redial sets) referenced by index i = KEYS[4 + i] (0 = none)
# ARGV[1] results maxlen, ARGV[2] rejected maxlen, ARGV[3] our instance id,
# ARGV[4] item count, ARGV[5] channel to PUBLISH each result on as a JSON
# object of the stream entry's fields ("" = none), then 9 per item: claim id,
# lease index, result JSON
# array of field/value strings ("" = none), rejected JSON array ("" = none),
# counters index, counters JSON array of field/increment pairs, redial set
# index, redial score, redial member
# Returns {how many items were written, then the claim ids not written
# because their record is gone or not ours to act on}.
FINISH = RECORDS + r"""
local me = ARGV[3]
local holder = redis.call('GET', KEYS[4])
local out = {0}
local a = 6
for i = 1, tonumber(ARGV[4]) do
  local id, lease, res, rej = ARGV[a], tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3]
  local counters, cnt = tonumber(ARGV[a + 4]), ARGV[a + 5]
  local retry, retry_score, retry_member = tonumber(ARGV[a + 6]), ARGV[a + 7], ARGV[a + 8]
  a = a + 9
  if may_act(me, holder, redis.call('HGET', KEYS[1], id)) then
    redis.call('HDEL', KEYS[1], id)
    if lease > 0 then redis.call('ZREM', KEYS[4 + lease], id) end
    if counters > 0 then
      local pairs_ = cjson.decode(cnt)
      for j = 1, #pairs_, 2 do
        redis.call('HINCRBY', KEYS[4 + counters], pairs_[j], pairs_[j + 1])
      end
    end
    if retry > 0 then redis.call('ZADD', KEYS[4 + retry], retry_score, retry_member) end
    if rej ~= '' then
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', unpack(cjson.decode(rej)))
    end
    if res ~= '' then
      local flat = cjson.decode(res)
      redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', unpack(flat))
      if ARGV[5] ~= '' then
        local doc = {}
        for j = 1, #flat, 2 do doc[flat[j]] = flat[j + 1] end
        redis.call('PUBLISH', ARGV[5], cjson.encode(doc))
      end
    end
    out[1] = out[1] + 1
  else
    out[#out + 1] = id
  end
end
return out
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


class Finished(NamedTuple):
    """What FINISH did: how many claims it ended, and which it left alone as not ours."""
    written: int
    lost: List[str]     # claim ids whose record is gone or not ours to act on


def finish(client, *, inflight: str, results: str, rejected: str, host_name: str, results_maxlen: int,
           rejected_maxlen: int, owner: str, endings: Sequence[Ending], channel: str = "") -> Finished:
    """Run FINISH: end every claim whose in-flight record is still there and ours."""
    keys = [inflight, results, rejected, host_name]
    index = {}

    def key_index(key):
        if not key:
            return 0
        if key not in index:
            keys.append(key)
            index[key] = len(keys) - 4
        return index[key]

    args = [results_maxlen, rejected_maxlen, owner, len(endings), channel]
    for e in endings:
        args += [e.claim_id, key_index(e.lease), _flat_json(e.result) if e.result else "",
                 _flat_json(e.rejected) if e.rejected else "", key_index(e.counters),
                 orjson.dumps([x for kv in e.counts.items() for x in kv]) if e.counts else "[]",
                 key_index(e.redial), e.redial_score, e.redial_member]
    reply = _script(client, FINISH)(keys=keys, args=args)
    return Finished(int(reply[0]), [as_text(x) for x in reply[1:]])


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


# Move up to N in-flight records of a host that is gone (no heartbeat, and
# no instance holding its name) into ours, each rewritten to name us as its
# owner, so that we settle them. The gone host's heartbeat and name are
# checked in the same step, so a host that is back (or never left) keeps
# every record, and its own later steps on a moved record find it gone.
#
# KEYS[1] the gone host's in-flight hash, KEYS[2] ours, KEYS[3] its heartbeat key,
# KEYS[4] its name key, KEYS[5] our own name key
# ARGV[1] N, ARGV[2] our instance id
# Returns the claim ids moved (empty when the owner is alive, when another
# instance holds our own name, or when it had none).
TAKE_OVER = RECORDS + r"""
if redis.call('EXISTS', KEYS[3]) == 1 or redis.call('EXISTS', KEYS[4]) == 1 then return {} end
if host_taken(KEYS[5], ARGV[2]) then return {} end
local ids = redis.call('HKEYS', KEYS[1])
local moved = {}
for i = 1, math.min(#ids, tonumber(ARGV[1])) do
  local record = redis.call('HGET', KEYS[1], ids[i])
  -- A record that is not a JSON object moves as it is: it is still a number to settle.
  redis.call('HSET', KEYS[2], ids[i], with_owner(record, ARGV[2]) or record)
  redis.call('HDEL', KEYS[1], ids[i])
  moved[#moved + 1] = ids[i]
end
return moved
"""


def take_over(client, *, theirs: str, ours: str, heartbeat: str, their_name: str, our_name: str, owner: str,
              count: int) -> List[str]:
    """Run TAKE_OVER: the claim ids moved from ``theirs`` to ``ours`` (none while the host is alive)."""
    return [as_text(x) for x in _script(client, TAKE_OVER)(keys=[theirs, ours, heartbeat, their_name, our_name],
                                                            args=[count, owner])]


# Push the expiry of live calls' line leases forward, only for claims whose
# in-flight record is still there and ours: a renewal built just before a
# call ended must not bring back the lease its FINISH freed (it would hold a
# line slot until the lease expired), and a host must not hold the slot of a
# claim another daemon took over.
#
# KEYS[1] this host's in-flight hash, KEYS[2] this host's name key,
# KEYS[3..] one lease sorted set per claim
# ARGV[1] new expiry, ARGV[2] our instance id, ARGV[3..] the claim ids, in KEYS order
# Returns {how many leases were renewed, then the claim ids whose record is
# gone or not ours to act on}. A lease another host pruned while we were
# cut off comes back (plain ZADD), so the count matches the calls up.
RENEW_LEASES = RECORDS + r"""
local holder = redis.call('GET', KEYS[2])
local out = {0}
for i = 3, #KEYS do
  local id = ARGV[i]
  if may_act(ARGV[2], holder, redis.call('HGET', KEYS[1], id)) then
    redis.call('ZADD', KEYS[i], ARGV[1], id)
    out[1] = out[1] + 1
  else
    out[#out + 1] = id
  end
end
return out
"""


def renew_leases(client, *, inflight: str, host_name: str, owner: str, leases: Sequence[Tuple[str, str]],
                 expiry: float) -> Tuple[int, List[str]]:
    """Run RENEW_LEASES for (lease key, claim id) pairs: (how many renewed, claim ids no longer ours)."""
    if not leases:
        return 0, []
    reply = _script(client, RENEW_LEASES)(keys=[inflight, host_name] + [key for key, _ in leases],
                                          args=[expiry, owner] + [cid for _, cid in leases])
    return int(reply[0]), [as_text(x) for x in reply[1:]]


# Hold this host's name for our instance: keep it while it is ours, take it
# while it is free. Taking a free name adopts every record of the host's
# in-flight hash that names another owner (or none): that owner's claim on
# the name expired or was released, so it is gone, and the records are ours
# to settle.
#
# KEYS[1] this host's name key, KEYS[2] this host's in-flight hash,
# KEYS[3] this host's heartbeat key, KEYS[4] the set of hosts
# ARGV[1] our instance id, ARGV[2] the name's time to live (milliseconds),
# ARGV[3] "1" to write the heartbeat too, ARGV[4] heartbeat value (unix time),
# ARGV[5] heartbeat time to live (seconds), ARGV[6] host name (for the set of hosts),
# ARGV[7] "1" to hold the name, "0" only to check that no other instance holds it
# Returns {1, records adopted} when the name is ours (or, with ARGV[7] "0",
# nobody else's), or {0, holder's instance id, holder's time to live in ms}
# when another instance holds it (then nothing is written, the heartbeat
# included).
HOLD_HOST = RECORDS + r"""
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {0, holder, redis.call('PTTL', KEYS[1])} end
if ARGV[7] == '1' then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
local adopted = 0
if ARGV[7] == '1' and not holder then
  local all = redis.call('HGETALL', KEYS[2])
  for i = 1, #all, 2 do
    if owner_of(all[i + 1]) ~= ARGV[1] then
      local record = with_owner(all[i + 1], ARGV[1])
      if record then
        redis.call('HSET', KEYS[2], all[i], record)
        adopted = adopted + 1
      end
    end
  end
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])
  redis.call('SADD', KEYS[4], ARGV[6])
end
return {1, adopted}
"""


class HostHold(NamedTuple):
    """The answer of HOLD_HOST: whether the name is ours, and who holds it."""
    ok: bool
    holder: str         # the instance id holding the name (ours when ok)
    ttl: float          # seconds the holder's claim has left (the full time to live when ok)
    adopted: int        # records of gone instances now ours (taking a free name)


def hold_host(client, *, name: str, inflight: str, alive: str, hosts: str, owner: str, host: str, name_ttl: float,
              heartbeat_ttl: Optional[float], now: float, hold: bool = True) -> HostHold:
    """Run HOLD_HOST; with ``heartbeat_ttl`` the heartbeat is written too (only when no one else has the name)."""
    ttl_ms = max(1, int(name_ttl * 1000))
    reply = _script(client, HOLD_HOST)(
        keys=[name, inflight, alive, hosts],
        args=[owner, ttl_ms, "1" if heartbeat_ttl is not None else "0", int(now),
              max(1, int(heartbeat_ttl or 0)), host, "1" if hold else "0"])
    if int(reply[0]):
        return HostHold(True, owner, ttl_ms / 1000.0, int(reply[1]))
    return HostHold(False, as_text(reply[1]), max(0, int(reply[2])) / 1000.0, 0)


# Give this host's name up (a clean stop), only if it is still ours.
#
# KEYS[1] this host's name key
# ARGV[1] our instance id
# Returns 1 when released, 0 when it was not ours.
RELEASE_HOST = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


def release_host(client, *, name: str, owner: str) -> bool:
    """Run RELEASE_HOST: True when the name was ours and is now free."""
    return bool(_script(client, RELEASE_HOST)(keys=[name], args=[owner]))


# Reserve a slot for a claim that fails over to its next line group: the
# least-loaded open line of the first entry that has one, at the task's pace.
#
# KEYS[1]      the domain's line-state hash, KEYS[2] the task's pace key
# KEYS[3..]    line lease sorted sets, in ARGV order
# ARGV[1]      now, ARGV[2] lease expiry, ARGV[3] claim id
# ARGV[4]      seconds between two calls of the task (0 = unpaced), ARGV[5] the pace's tolerance
# ARGV[6..]    the line groups as read_groups (LINES) reads them
# Returns {"ok", line name, group position}, {"no_line", wake} when no line
# is open or {"paced", wake}; wake as in CLAIM_NUMBERS.
RESERVE_LINE = LINES + r"""
local now, expiry, id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local interval, tolerance = tonumber(ARGV[4]), tonumber(ARGV[5])
local tat, allowed = pace_next(KEYS[2], interval, tolerance, now)
if not tat then return {'paced', tostring(allowed)} end
local entries = read_groups(6, 3, now)
local line, entry, wake = pick_line(entries, KEYS[1], now)
if not line then return {'no_line', wake and tostring(wake) or ''} end
take_slot(line, entry, KEYS[1], id, now, expiry)
pace_take(KEYS[2], interval, tat, now)
return {'ok', line.name, entry.position}
"""

def reserve_line(client, *, line_state: str, pace_key: str, leases: Sequence[str], groups: LineGroups,
                 claim_id: str, now: float, expiry: float,
                 pace: Tuple[float, float] = (0.0, 0.0)) -> Tuple[str, Optional[str], Optional[int], Optional[float]]:
    """Run RESERVE_LINE: (OK, line, group index, None), or (NO_LINE or PACED, None, None, wake)."""
    reply = _script(client, RESERVE_LINE)(keys=[line_state, pace_key, *leases],
                                          args=[now, expiry, claim_id, pace[0], pace[1], *group_args(groups)])
    status = as_text(reply[0])
    if status == OK:
        return status, as_text(reply[1]), int(reply[2]), None
    return status, None, None, _wake(reply[1])


# What one finished call says about its line (fault detection), across hosts.
#
# KEYS[1]  the domain's line-state hash (line_gates.LINES)
# ARGV[1]  line name, ARGV[2] "1" the line worked / "0" it failed,
# ARGV[3]  fault_threshold, ARGV[4] fault_try_interval (seconds), ARGV[5] now
# Returns {transition, consecutive failures}; transition is
#   "ok"          worked, and the line was in service
#   "recovered"   worked while out of service (its probe, or a call started
#                 before the fault): back in service on every host
#   "counted"     failed, still under the threshold
#   "faulted"     failed and reached the threshold: out of service until
#                 now + interval, when one probe call may take it
#   "still_out"   failed while out of service: the next probe an interval
#                 from now
LINE_RESULT = r"""
local out_field, failures_field = 'out:' .. ARGV[1], 'failures:' .. ARGV[1]
local now, interval = tonumber(ARGV[5]), tonumber(ARGV[4])
if ARGV[2] == '1' then
  local was_out = redis.call('HDEL', KEYS[1], out_field)
  redis.call('HDEL', KEYS[1], failures_field)
  if was_out == 1 then return {'recovered', 0} end
  return {'ok', 0}
end
local failures = redis.call('HINCRBY', KEYS[1], failures_field, 1)
if redis.call('HEXISTS', KEYS[1], out_field) == 1 then
  redis.call('HSET', KEYS[1], out_field, now + interval)
  return {'still_out', failures}
end
if failures >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], out_field, now + interval)
  return {'faulted', failures}
end
return {'counted', failures}
"""


def line_result(client, *, line_state: str, line: str, worked: bool, threshold: int, interval: float,
                now: float) -> Tuple[str, int]:
    """Run LINE_RESULT: (transition, consecutive failures) of ``line`` after one call."""
    reply = _script(client, LINE_RESULT)(keys=[line_state],
                                         args=[line, "1" if worked else "0", threshold, interval, now])
    return as_text(reply[0]), int(reply[1])
