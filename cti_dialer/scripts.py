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

Ownership: every in-flight record names the daemon instance that may act on
it (``owner``, the first field of its JSON), and a host's name
(``cti_dialer_instance@<host>``) names the one instance running under it.
Every script that touches an existing record acts only while the record is
there and the caller may act on it (``may_act`` below), and otherwise
changes nothing and answers ``lost``. A Lua error does not undo the writes
made before it, so every script checks and encodes what it will write before
its first write.
"""
import json
import weakref
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import orjson
import redis
from redis.commands.core import Script

from .lifecycle import ClaimState
from .line_gates import LINES, group_args
from .model import as_text

# Script replies that are not claim states.
OK = "ok"
EMPTY = "empty"            # CLAIM_NUMBERS: no number waiting
NO_LINE = "no_line"        # CLAIM_NUMBERS: every line full
GONE = "gone"              # CLAIM_SCHEDULED, TAKE_REJECTED: not in the set, or not due
REQUEUED = "requeued"      # CLAIM_SCHEDULED: no line, written back for later
DNC = "dnc"                # MARK_SENT: the number is on the do-not-call list
DUPLICATE = "duplicate"    # MARK_SENT: another claim holds the same idempotency id
LOST = "lost"              # the record is gone (settled, requeued, taken over) or another instance owns it
HOST_TAKEN = "host_taken"  # claim scripts: another running instance holds this host's name
PACED = "paced"            # claim scripts: the task's cps allows no call yet

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


def encode_record(owner: str, record: Dict) -> bytes:
    """An in-flight record's JSON as the scripts expect it: ``{"owner":"<owner>",...``.

    Whatever ``owner`` the record carries is replaced: a writer can only
    write as itself.
    """
    doc = {"owner": owner}
    doc.update((name, value) for name, value in record.items() if name != "owner")
    try:
        return orjson.dumps(doc)
    except TypeError:
        # A raw entry that is not UTF-8 travels as surrogates; its bytes go
        # back as they came, as cjson writes them in the claim scripts.
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogateescape")


# Shared by the scripts below. A record's owner is read and rewritten through
# the prefix '{"owner":"<id>"' that both encoders write: decoding and
# re-encoding a record in Lua would round its times to 14 digits, and cjson
# fails on what it cannot encode. Instance ids never contain '"'.
RECORDS = r"""
local function owner_of(record)
  return string.match(record, '^{"owner":"([^"]*)"')
end
-- Whether instance `me` may act on an existing `record` of a host whose name
-- `holder` holds (false: nobody). Never when another instance holds the name.
-- While we hold it, only on records naming us, or naming nobody (written
-- before owners existed): taking the name rewrites every record to name the
-- taker. While nobody holds it (a crash or a cut-off expired it, or daemons
-- that do not claim names), the writer named in a record has provably left
-- or is the caller, so the record's existence is what counts.
local function may_act(me, holder, record)
  if not record then return false end
  if not holder then return true end
  if holder ~= me then return false end
  local owner = owner_of(record)
  return owner == nil or owner == me
end
local function with_owner(record, me)
  local head = '{"owner":"' .. me .. '"'
  local _, stop = string.find(record, '^{"owner":"[^"]*"')
  if stop then return head .. string.sub(record, stop + 1) end
  if string.find(record, '^{%s*}$') then return head .. '}' end
  if string.sub(record, 1, 1) == '{' then return head .. ',' .. string.sub(record, 2) end
  return nil
end
local function new_record(me, fields)
  local ok, encoded = pcall(cjson.encode, fields)
  if not ok then return nil, tostring(encoded) end
  return '{"owner":"' .. me .. '",' .. string.sub(encoded, 2)
end
local function finite(x)
  return x ~= nil and x == x and x ~= math.huge and x ~= -math.huge
end
local function host_taken(name_key, me)
  local holder = redis.call('GET', name_key)
  return holder and holder ~= me
end
"""


# Claim numbers from a task's queue together with a line slot for each.
#
# KEYS[1]      number queue (list; upstream LPUSHes, so the oldest is on the right)
# KEYS[2]      this host's in-flight hash
# KEYS[3]      the task's redial sorted set (score = due time); due redials go first
# KEYS[4]      this host's name key (cti_dialer_instance@<host>)
# KEYS[5]      the domain's line-state hash (LINES above)
# KEYS[6]      the task's pace key (used when ARGV[7] > 0)
# KEYS[7..]    line lease sorted sets, one per candidate line, in ARGV order
# ARGV[1]      now (unix seconds)
# ARGV[2]      lease expiry (unix seconds)
# ARGV[3]      task name (copied into the in-flight record)
# ARGV[4]      state of the new records (ClaimState.CLAIMED)
# ARGV[5]      state of a redial member that is not dialable (ClaimState.REJECTED)
# ARGV[6]      our instance id (the new records' owner)
# ARGV[7]      seconds between two calls of the task (1 / cps; 0 = unpaced)
# ARGV[8]      the pace's tolerance (seconds a call may come early)
# ARGV[9..]    the line groups as read_groups (LINES) reads them
# then the claim ids to use, one per number wanted (their count is the batch)
#
# Returns {status, wake, id1, raw1, line1, group1, from1, id2, ...}; from is
# "list" or "zset" (a redial member); status is "ok", "empty" (no number
# waiting), "no_line" (every line full, resting or out), "paced" (the task's
# cps allows no call yet) or "host_taken" (another instance holds this
# host's name: nothing is claimed); wake is when a rest, an outage or the
# pace next allows a call ("" when nothing but a call's end will). A number
# is popped only when a line slot is taken for it in the same step, and is
# in the in-flight hash before the script returns: a crash can never lose it.
# Within a tier the least-loaded open line (count / limit) is chosen.
# A redial member scored -inf or +inf (ZADD accepts both) has no time and
# cjson cannot encode its score: it is moved, under the next claim id, into
# the in-flight hash as ARGV[5] with a reason and no line, and is not
# returned; the sweep of stranded records writes its rejected record and
# result.
CLAIM_NUMBERS = RECORDS + LINES + r"""
local now = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2])
local task = ARGV[3]
local claimed, rejected, me = ARGV[4], ARGV[5], ARGV[6]
local interval, tolerance = tonumber(ARGV[7]), tonumber(ARGV[8])
if host_taken(KEYS[4], me) then return {'host_taken', ''} end
local entries, idx = read_groups(9, 7, now)
local out = {'ok', ''}
local function stop(status, wake)
  if #out == 2 then out[1] = status end
  if wake then out[2] = tostring(wake) end
  return out
end
local function reject_redial(member, score)
  local record = new_record(me, {kind = 'queue', task = task, queue = KEYS[3], back = 'zset', raw = member,
    score = 0, state = rejected, claimed_at = now,
    reason = 'redial member scored ' .. score .. ': not a time to call'})
  if not record then return false end
  redis.call('ZREM', KEYS[3], member)
  redis.call('HSET', KEYS[2], ARGV[idx], record)
  idx = idx + 1
  return true
end
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '+inf', '+inf', 'LIMIT', 0, #ARGV - idx + 1)) do
  if not reject_redial(member, 'inf') then break end
end
while idx <= #ARGV do
  local tat, allowed = pace_next(KEYS[6], interval, tolerance, now)
  if not tat then return stop('paced', allowed) end
  local best, entry, wake = pick_line(entries, KEYS[5], now)
  if not best then return stop('no_line', wake) end
  local raw, from, source, score = nil, 'list', KEYS[1], 0
  local due = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1)
  if #due > 0 then
    raw, from, source, score = due[1], 'zset', KEYS[3], tonumber(due[2])
  else
    raw = redis.call('LINDEX', KEYS[1], -1)
  end
  if not raw then return stop('empty', nil) end
  local record, err = nil, nil
  if finite(score) then
    record, err = new_record(me, {kind = 'queue', task = task, queue = source, back = from, raw = raw,
      score = score, line = best.name, group = entry.position, state = claimed, claimed_at = now})
  elseif reject_redial(raw, due[2]) then
    record = false
  end
  if record == nil then
    -- Nothing of this entry is written: it stays first in line.
    if #out == 2 then
      return redis.error_reply('cannot encode the in-flight record of an entry of ' .. source .. ': ' .. (err or ''))
    end
    return out
  end
  if record then
    local id = ARGV[idx]; idx = idx + 1
    if from == 'zset' then redis.call('ZREM', KEYS[3], raw) else redis.call('RPOP', KEYS[1]) end
    take_slot(best, entry, KEYS[5], id, now, expiry)
    pace_take(KEYS[6], interval, tat, now)
    redis.call('HSET', KEYS[2], id, record)
    table.insert(out, id); table.insert(out, raw); table.insert(out, best.name); table.insert(out, entry.position)
    table.insert(out, from)
  end
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


def claim_numbers(client, *, queue: str, inflight: str, redials: str, host_name: str, line_state: str,
                  pace_key: str, leases: Sequence[str], groups: LineGroups, task: str, owner: str,
                  claim_ids: Sequence[str], now: float, expiry: float,
                  pace: Tuple[float, float] = (0.0, 0.0)) -> Tuple[str, Optional[float], List[Claimed]]:
    """Run CLAIM_NUMBERS: up to len(claim_ids) numbers, each recorded "claimed" with a line slot.

    ``leases`` are the lease keys of the lines of ``groups``, in the same
    order; ``pace`` is (seconds between calls, tolerance) of the task's cps.
    Returns (OK, EMPTY, NO_LINE, PACED or HOST_TAKEN, wake, the numbers
    taken); the status says why the batch stopped short, if it did, and
    wake when a rest, an outage or the pace next allows a call (None: only
    a call's end will). Claim ids that come back neither taken nor unused
    went to redial members that were rejected.
    """
    reply = _script(client, CLAIM_NUMBERS)(
        keys=[queue, inflight, redials, host_name, line_state, pace_key, *leases],
        args=[now, expiry, task, ClaimState.CLAIMED.value, ClaimState.REJECTED.value, owner, pace[0], pace[1],
              *group_args(groups), *claim_ids])
    items = [Claimed(as_text(reply[i]), reply[i + 1], as_text(reply[i + 2]), int(reply[i + 3]),
                     as_text(reply[i + 4])) for i in range(2, len(reply), 5)]
    return as_text(reply[0]), _wake(reply[1]), items


def _wake(value) -> Optional[float]:
    return float(value) if value not in (b"", "", None) else None


# Claim one due schedule member: with a line slot, or apply the seed's rule.
#
# KEYS[1]      schedule sorted set (score = unix time to call)
# KEYS[2]      this host's in-flight hash
# KEYS[3]      this host's name key (cti_dialer_instance@<host>)
# KEYS[4]      the domain's line-state hash (LINES above)
# KEYS[5..]    line lease sorted sets, in ARGV order
# ARGV[1]      now, ARGV[2] lease expiry, ARGV[3] member, ARGV[4] claim id
# ARGV[5]      expires (unix time, 0 = never), ARGV[6] write-back delay (60)
# ARGV[7]      schedule config name
# ARGV[8]      the states to record: claimed, ARGV[9] expired, ARGV[10] dropped,
#              ARGV[11] rejected
# ARGV[12]     our instance id (the record's owner)
# ARGV[13..]   the line groups as read_groups (LINES) reads them
#
# Returns one of
#   {"gone"}                 not in the set or not due (another daemon took it)
#   {"host_taken"}           another instance holds this host's name: nothing done
#   {ARGV[11], reason}       scored -inf or +inf (not a time, and cjson cannot
#                            encode it): removed, in-flight ARGV[11] with the reason
#   {"ok", line, group}      removed from the set, lease taken, in-flight ARGV[8]
#   {ARGV[9]}                past expires: removed, in-flight ARGV[9]
#   {"requeued", score}      no open line: written back at the end of a line's or
#                            group's rest or outage, or at now + delay if sooner,
#                            or (lines full) at now + delay within expires
#   {ARGV[10]}               no free line and expires is 0 or too close: removed,
#                            in-flight ARGV[10]
# Every outcome that removes the member writes its in-flight record in the
# same step, encoded before the member goes: a crash before its result is
# written loses nothing, and an error leaves the member where it was.
CLAIM_SCHEDULED = RECORDS + LINES + r"""
local now = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2])
local member = ARGV[3]
local id = ARGV[4]
local expires = tonumber(ARGV[5])
local delay = tonumber(ARGV[6])
local claimed, expired, dropped, rejected, me = ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12]
if host_taken(KEYS[3], me) then return {'host_taken'} end
local found = redis.call('ZSCORE', KEYS[1], member)
if not found then return {'gone'} end
local score = tonumber(found)
local function park(state, line, group, reason)
  local record = new_record(me, {kind = 'schedule', task = ARGV[7], queue = KEYS[1], back = 'zset',
    raw = member, score = reason and 0 or score, line = line, group = group, state = state,
    claimed_at = now, reason = reason})
  if not record then return false end
  redis.call('ZREM', KEYS[1], member)
  redis.call('HSET', KEYS[2], id, record)
  return true
end
local function failed()
  return redis.error_reply('cannot encode the in-flight record of a member of ' .. KEYS[1])
end
if not finite(score) then
  local reason = 'score ' .. found .. ' is not a time to call'
  if not park(rejected, nil, nil, reason) then return failed() end
  return {rejected, reason}
end
if score > now then return {'gone'} end
if expires > 0 and now > expires then
  if not park(expired, '', 0) then return failed() end
  return {expired}
end
local line, entry, wake = pick_line(read_groups(13, 5, now), KEYS[4], now)
if line then
  -- Encoded before the slot is taken: a failure leaves no lease or rest behind.
  if not park(claimed, line.name, entry.position) then return failed() end
  take_slot(line, entry, KEYS[4], id, now, expiry)
  return {'ok', line.name, entry.position}
end
-- A line that only rests or is out until a known time is not "no line": the
-- member waits for that time (or the write-back delay, if sooner).
if wake then
  local at = math.min(wake, now + delay)
  if expires == 0 or at <= expires then
    redis.call('ZADD', KEYS[1], 'XX', at, member)
    return {'requeued', tostring(at)}
  end
end
if expires > 0 and now + delay <= expires then
  redis.call('ZADD', KEYS[1], 'XX', now + delay, member)
  return {'requeued', tostring(now + delay)}
end
if not park(dropped, '', 0) then return failed() end
return {dropped}
"""

# (member, claim id, expires, schedule config name, line lease keys, line groups)
ScheduledItem = Tuple[bytes, str, float, str, Sequence[str], LineGroups]
# CLAIM_SCHEDULED raised for that item (nothing of it was written); the reply's
# second part is the error text.
ERROR = "error"


def claim_scheduled(client, *, schedule: str, inflight: str, host_name: str, line_state: str, owner: str,
                    items: Sequence[ScheduledItem], now: float, expiry: float,
                    delay: float) -> List[Tuple[str, object, Optional[int]]]:
    """Run CLAIM_SCHEDULED for each item, all in one round trip.

    Per item: (OK, line, group index), (REQUEUED, new score, None),
    (ClaimState.REJECTED's value, reason, None), (ERROR, message, None) when
    the script failed for that item alone, or (status, None, None) with status
    GONE, HOST_TAKEN, or the state the member was recorded in:
    ClaimState.EXPIRED or ClaimState.DROPPED's value. One item's failure
    never hides the others' replies: their members are in-flight already.
    """
    script = _script(client, CLAIM_SCHEDULED)
    states = [ClaimState.CLAIMED.value, ClaimState.EXPIRED.value, ClaimState.DROPPED.value,
              ClaimState.REJECTED.value]
    pipe = client.pipeline(transaction=False)
    for member, claim_id, expires, config, leases, groups in items:
        script(keys=[schedule, inflight, host_name, line_state, *leases],
               args=[now, expiry, member, claim_id, expires, delay, config, *states, owner,
                     *group_args(groups)],
               client=pipe)
    out = []
    for reply in pipe.execute(raise_on_error=False):
        if isinstance(reply, Exception):
            out.append((ERROR, str(reply), None))
            continue
        status = as_text(reply[0])
        if status == OK:
            out.append((status, as_text(reply[1]), int(reply[2])))
        elif status == REQUEUED:
            out.append((status, float(reply[1]), None))
        elif status == ClaimState.REJECTED.value:
            out.append((status, as_text(reply[1]), None))
        else:
            out.append((status, None, None))
    return out


# Take a malformed schedule member out of the set into the in-flight hash,
# only if it is still there.
#
# KEYS[1] schedule sorted set, KEYS[2] in-flight hash, KEYS[3] this host's name key
# ARGV[1] member, ARGV[2] claim id, ARGV[3] now, ARGV[4] reason, ARGV[5] config name (may be ""),
# ARGV[6] state of the record (ClaimState.REJECTED), ARGV[7] our instance id (the record's owner)
# Returns "ok" when taken, "gone" when another daemon already did, "host_taken"
# when another instance holds this host's name. A score of -inf or +inf is
# recorded as 0: cjson cannot encode it, and the record is never requeued.
TAKE_REJECTED = RECORDS + r"""
if host_taken(KEYS[3], ARGV[7]) then return 'host_taken' end
local found = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not found then return 'gone' end
local score = tonumber(found)
if not finite(score) then score = 0 end
local record = new_record(ARGV[7], {kind = 'schedule', task = ARGV[5], queue = KEYS[1], back = 'zset',
  raw = ARGV[1], score = score, state = ARGV[6], reason = ARGV[4], claimed_at = tonumber(ARGV[3])})
if not record then return redis.error_reply('cannot encode the in-flight record of a member of ' .. KEYS[1]) end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], record)
return 'ok'
"""


def take_rejected(client, *, schedule: str, inflight: str, host_name: str, owner: str, member: bytes,
                  claim_id: str, now: float, reason: str, config: str) -> str:
    """Run TAKE_REJECTED: OK when ``member`` moved into the in-flight hash as "rejected", else GONE or HOST_TAKEN."""
    return as_text(_script(client, TAKE_REJECTED)(
        keys=[schedule, inflight, host_name],
        args=[member, claim_id, now, reason, config, ClaimState.REJECTED.value, owner]))


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
