"""The Redis edge: every script and every read or write of the dialer's keys.

Policy (what to dial, when, on which line) lives in the daemon; this module
only offers atomic domain operations. Key names come from ``keys.Keys``.
"""
import logging
import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import orjson
import redis

from .keys import Keys
from .model import as_text

log = logging.getLogger("cti_dialer.store")

# Claim numbers from a task's queue together with a line slot for each.
#
# KEYS[1]      number queue (list; upstream LPUSHes, so the oldest is on the right)
# KEYS[2]      this host's in-flight hash
# KEYS[3]      the task's redial sorted set (score = due time); due redials go first
# KEYS[4..]    line lease sorted sets, one per candidate line, in ARGV order
# ARGV[1]      now (unix seconds)
# ARGV[2]      lease expiry (unix seconds)
# ARGV[3]      task name (copied into the in-flight record)
# ARGV[4]      number of line groups G
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
local ngroups = tonumber(ARGV[4])
local groups = {}
local bykey = {}
local a = 5
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
    raw = raw, score = score, line = best.name, group = bestg - 1, state = 'claimed', claimed_at = now}))
  table.insert(out, id); table.insert(out, raw); table.insert(out, best.name); table.insert(out, bestg - 1)
  table.insert(out, from)
end
return out
"""

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


# Claim one due schedule member: with a line slot, or apply the seed's rule.
#
# KEYS[1]      schedule sorted set (score = unix time to call)
# KEYS[2]      this host's in-flight hash
# KEYS[3..]    line lease sorted sets, in ARGV order
# ARGV[1]      now, ARGV[2] lease expiry, ARGV[3] member, ARGV[4] claim id
# ARGV[5]      expires (unix time, 0 = never), ARGV[6] write-back delay (60)
# ARGV[7]      schedule config name
# ARGV[8]      number of groups G, then per group: n, then n (line name, limit) pairs
#
# Returns one of
#   {"gone"}                 not in the set or not due (another daemon took it)
#   {"ok", line, group}      removed from the set, lease taken, in-flight "claimed"
#   {"expired"}              past expires: removed, in-flight "expired"
#   {"requeued", score}      no free line: written back at now + delay
#   {"dropped"}              no free line and expires is 0 or too close: removed,
#                            in-flight "dropped"
# Every outcome that removes the member leaves it in the in-flight hash, so a
# crash before its result is written loses nothing.
CLAIM_SCHEDULED = TAKE_LINE + r"""
local now = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2])
local member = ARGV[3]
local id = ARGV[4]
local expires = tonumber(ARGV[5])
local delay = tonumber(ARGV[6])
local score = redis.call('ZSCORE', KEYS[1], member)
if not score or tonumber(score) > now then return {'gone'} end
local function park(state, line, group)
  redis.call('ZREM', KEYS[1], member)
  redis.call('HSET', KEYS[2], id, cjson.encode({kind = 'schedule', task = ARGV[7], queue = KEYS[1],
    back = 'zset', raw = member, score = tonumber(score), line = line, group = group, state = state,
    claimed_at = now}))
end
if expires > 0 and now > expires then park('expired', '', 0); return {'expired'} end
local line, group = take_line(now, expiry, id, 3, 8)
if line then
  park('claimed', line, group)
  return {'ok', line, group}
end
if expires > 0 and now + delay <= expires then
  redis.call('ZADD', KEYS[1], 'XX', now + delay, member)
  return {'requeued', tostring(now + delay)}
end
park('dropped', '', 0)
return {'dropped'}
"""

# Take a malformed schedule member out of the set into the in-flight hash
# (state "rejected"), only if it is still there.
#
# KEYS[1] schedule sorted set, KEYS[2] in-flight hash
# ARGV[1] member, ARGV[2] claim id, ARGV[3] now, ARGV[4] reason, ARGV[5] config name (may be "")
# Returns 1 when taken, 0 when another daemon already did.
TAKE_REJECTED = r"""
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[2], cjson.encode({kind = 'schedule', task = ARGV[5], queue = KEYS[1],
  back = 'zset', raw = ARGV[1], score = tonumber(score), state = 'rejected', reason = ARGV[4],
  claimed_at = tonumber(ARGV[3])}))
return 1
"""


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
# 8 per item: claim id, lease index, result JSON array of field/value strings,
# rejected JSON array ("" = none), counters index, counters JSON array of
# field/increment pairs, redial set index, redial score, redial member
# (the last three after the counters array: 9 slots in all)
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


# Move up to N in-flight records of a host that is gone (no heartbeat) into
# ours, so that we settle them. The owner's heartbeat is checked in the same
# step, so a host that is back (or never left) keeps every record.
#
# KEYS[1] the gone host's in-flight hash, KEYS[2] ours, KEYS[3] its heartbeat key
# ARGV[1] N, ARGV[2] our host name
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


# Which idle tasks have work: a number in their queue or a due redial.
#
# KEYS pairs: (queue list, redial sorted set) per task; no ARGV: "now" is the
# server's clock, so the command's bytes stay the same from poll to poll.
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


class Candidates:
    """Line groups flattened for the scripts: [(group lines [(name, limit)])]."""

    def __init__(self, groups: Sequence[Sequence[Tuple[str, int]]]):
        self.groups = [list(g) for g in groups]

    def keys(self, keys: Keys) -> List[str]:
        return [keys.line_lease(name) for group in self.groups for name, _ in group]

    def args(self) -> List:
        out = [len(self.groups)]
        for group in self.groups:
            out.append(len(group))
            for name, limit in group:
                out.extend((name, limit))
        return out

    def __bool__(self):
        return any(self.groups)


def _read_int_array(sock) -> List[int]:
    """Read one RESP reply that is an array of integers (HAS_WORK's) from a raw socket.

    Only this reply shape is expected on the idle watcher's own connection;
    anything else (an error) raises, and the connection is thrown away.
    """
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise redis.ConnectionError("connection closed by the server")
        data += chunk
        if data.startswith(b"-"):
            if data.endswith(b"\r\n"):
                message = data[1:-2].decode("utf-8", "replace")
                if message.startswith("NOSCRIPT"):
                    raise redis.exceptions.NoScriptError(message)
                raise redis.ResponseError(message)
            continue
        if not data.startswith(b"*"):
            raise redis.ConnectionError("unexpected reply %r" % data[:40])
        head, sep, rest = data.partition(b"\r\n")
        if not sep:
            continue
        count = int(head[1:])
        items = rest.split(b"\r\n")
        if count <= 0:
            return []
        # complete when ``count`` integer lines and the final CRLF are in
        if len(items) > count and items[count] == b"":
            return [int(item[1:]) for item in items[:count]]


def _flat_json(record: Dict) -> bytes:
    """A record as the JSON array [field, value, ...] of strings that FINISH unpacks.

    Called for every result: exact-type tests instead of _fields' isinstance
    chain, for the types results are made of.
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
            value = _fields({name: value})[name]
        out.append(name)
        out.append(value)
    return orjson.dumps(out)


def _fields(record: Dict) -> Dict[str, str]:
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


class Store:
    """Domain operations on one Redis, for one host and domain."""

    def __init__(self, client: redis.Redis, keys: Keys, *, result_maxlen=1_000_000, rejected_maxlen=100_000):
        self.r = client
        self.keys = keys
        self.result_maxlen = result_maxlen
        self.rejected_maxlen = rejected_maxlen
        self._claim = client.register_script(CLAIM_NUMBERS)
        self._reserve = client.register_script(RESERVE_LINE)
        self._claim_scheduled = client.register_script(CLAIM_SCHEDULED)
        self._take_rejected = client.register_script(TAKE_REJECTED)
        self._requeue = client.register_script(REQUEUE)
        self._finish = client.register_script(FINISH)
        self._mark_sent = client.register_script(MARK_SENT)
        self._take_over = client.register_script(TAKE_OVER)
        self._has_work = client.register_script(HAS_WORK)
        self._idle_tasks, self._idle_keys, self._idle_packed, self._idle_conn = (), [], None, None

    # --- configuration ------------------------------------------------------------

    def read_tasks(self) -> Tuple[Dict[bytes, bytes], Dict[bytes, bytes]]:
        """Both task hashes (template, host) in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.keys.task_template)
        pipe.hgetall(self.keys.task_host)
        template, host = pipe.execute()
        return template, host

    def read_task(self, name: str) -> Tuple[Optional[bytes], Optional[bytes]]:
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(self.keys.task_template, name)
        pipe.hget(self.keys.task_host, name)
        template, host = pipe.execute()
        return template, host

    def read_lines(self) -> Dict[bytes, bytes]:
        return self.r.hgetall(self.keys.lines)

    def read_line(self, name) -> Optional[bytes]:
        return self.r.hget(self.keys.lines, name)

    def read_groups(self) -> Dict[bytes, bytes]:
        return self.r.hgetall(self.keys.groups)

    def read_group(self, name) -> Optional[bytes]:
        return self.r.hget(self.keys.groups, name)

    # --- numbers --------------------------------------------------------------------

    def claim_numbers(self, queue: str, task: str, candidates: Candidates, claim_ids: Sequence[str],
                      now: float, lease_ttl: float):
        """Pop up to len(claim_ids) numbers, each with a line slot; see CLAIM_NUMBERS.

        Returns (status, [(claim_id, raw, line, group_index, from)]); from is
        "list" for a queue entry, "zset" for a due redial member.
        """
        reply = self._claim(keys=[queue, self.keys.inflight, self.keys.retries(task)] + candidates.keys(self.keys),
                            args=[now, now + lease_ttl, task] + candidates.args() + list(claim_ids))
        status = as_text(reply[0])
        items = []
        for i in range(1, len(reply), 5):
            items.append((as_text(reply[i]), reply[i + 1], as_text(reply[i + 2]), int(reply[i + 3]),
                          as_text(reply[i + 4])))
        return status, items

    def tasks_with_work(self, tasks: Sequence[Tuple[str, str]]) -> List[int]:
        """Indexes of the (task, queue) pairs whose queue or redial set has work now (HAS_WORK).

        Polled a hundred times a second for every idle task, so it skips
        redis-py's per-command machinery: the command is packed once per set
        of idle tasks and written on a connection of its own.
        """
        tasks = tuple(tasks)
        if tasks != self._idle_tasks or self._idle_conn is None:
            keys = []
            for task, queue in tasks:
                keys += [queue, self.keys.retries(task)]
            self._idle_keys = keys
            if self._idle_conn is None:
                try:
                    self._idle_conn = self.r.connection_pool.get_connection()
                except TypeError:           # redis-py before 5.3 wants a command name
                    self._idle_conn = self.r.connection_pool.get_connection("EVALSHA")
            self._idle_packed = b"".join(
                self._idle_conn.pack_command("EVALSHA", self._has_work.sha, len(keys), *keys))
            self._idle_tasks = tasks
        conn = self._idle_conn
        try:
            if conn._sock is None:
                conn.connect()
            sock = conn._sock
            if not hasattr(sock, "recv"):       # not a socket (fakeredis in the unit tests)
                return [int(i) - 1 for i in self._has_work(keys=self._idle_keys)]
            sock.sendall(self._idle_packed)
            reply = _read_int_array(sock)
        except redis.exceptions.NoScriptError:
            # First use, or the server's script cache was flushed: load it the usual way.
            reply = self._has_work(keys=self._idle_keys)
        except BaseException:
            self._idle_conn = None
            conn.disconnect()
            self.r.connection_pool.release(conn)
            raise
        return [int(i) - 1 for i in reply]

    def wait_for_number(self, queue: str, timeout: float) -> bool:
        """Block until ``queue`` has a number (or ``timeout``); True when it has one.

        ``BLMOVE q q RIGHT RIGHT`` takes the oldest entry and puts it back
        where it was, in one atomic step: the queue's order and content are
        unchanged, and the call blocks on the server instead of polling.
        Needs Redis 6.2; raises redis.ResponseError on older servers.
        """
        return self.r.blmove(queue, queue, timeout, "RIGHT", "RIGHT") is not None

    def reserve_line(self, claim_id: str, candidates: Candidates, now: float, lease_ttl: float):
        """A slot on the first group with a free line: (line, group_index) or None."""
        reply = self._reserve(keys=candidates.keys(self.keys),
                              args=[now, now + lease_ttl, claim_id] + candidates.args())
        if not reply:
            return None
        return as_text(reply[0]), int(reply[1])

    def due_members(self, now: float, count: int) -> List[Tuple[bytes, float]]:
        """The earliest due schedule members (score <= now); O(log N + count)."""
        return self.r.zrangebyscore(self.keys.schedule_numbers, "-inf", now, start=0, num=count,
                                    withscores=True)

    def claim_scheduled(self, items: Sequence[Tuple[bytes, str, float, str, Candidates]], now: float,
                        lease_ttl: float, delay: float = 60):
        """Run CLAIM_SCHEDULED for (member, claim_id, expires, config, candidates) in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for member, claim_id, expires, config, candidates in items:
            self._claim_scheduled(keys=[self.keys.schedule_numbers, self.keys.inflight] + candidates.keys(self.keys),
                                  args=[now, now + lease_ttl, member, claim_id, expires, delay, config]
                                  + candidates.args(), client=pipe)
        out = []
        for reply in pipe.execute():
            status = as_text(reply[0])
            if status == "ok":
                out.append((status, as_text(reply[1]), int(reply[2])))
            elif status == "requeued":
                out.append((status, float(reply[1]), None))
            else:
                out.append((status, None, None))
        return out

    def take_rejected(self, member: bytes, claim_id: str, now: float, reason: str, config: str = "") -> bool:
        """Move a malformed member into the in-flight hash (state "rejected"); False if already gone."""
        return bool(self._take_rejected(keys=[self.keys.schedule_numbers, self.keys.inflight],
                                        args=[member, claim_id, now, reason, config]))

    def read_schedule_configs(self) -> Dict[bytes, bytes]:
        return self.r.hgetall(self.keys.schedule_configs)

    def read_schedule_config(self, name) -> Optional[bytes]:
        return self.r.hget(self.keys.schedule_configs, name)

    def update_inflight(self, claim_id: str, record: Dict):
        self.r.hset(self.keys.inflight, claim_id, orjson.dumps(record))

    def inflight(self) -> Dict[str, Dict]:
        """This host's in-flight records, for recovery after a restart."""
        out = {}
        for cid, raw in self.r.hgetall(self.keys.inflight).items():
            try:
                out[as_text(cid)] = orjson.loads(raw)
            except orjson.JSONDecodeError:
                # cjson passes invalid UTF-8 from a bad queue entry through.
                import json
                out[as_text(cid)] = json.loads(raw.decode("utf-8", "surrogateescape"))
        return out

    def release_line(self, line: str, claim_id: str):
        self.r.zrem(self.keys.line_lease(line), claim_id)

    def renew_leases(self, leases: Iterable[Tuple[str, str]], now: float, lease_ttl: float):
        """Push the expiry of live calls' line slots forward (line, claim id)."""
        pipe = self.r.pipeline(transaction=False)
        n = 0
        for line, claim_id in leases:
            # Plain ZADD: a lease another host pruned while we were cut off
            # comes back, so the line's count matches the calls really up.
            pipe.zadd(self.keys.line_lease(line), {claim_id: now + lease_ttl})
            n += 1
        if n:
            pipe.execute()

    def requeue(self, claim_id: str, record: Dict) -> bool:
        """Put a never-dialed claimed number back where it will be taken next (once)."""
        raw = record.get("raw")
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        line, seen = record.get("line"), record.get("seen")
        back = record.get("back") or ("zset" if record.get("kind") == "schedule" else "list")
        keys = [self.keys.inflight, record["queue"], self.keys.line_lease(line) if line else self.keys.inflight,
                seen or self.keys.inflight]
        return bool(self._requeue(keys=keys, args=[claim_id, raw, back, float(record.get("score") or 0),
                                                   "1" if line else "0", "1" if seen else "0"]))

    def mark_sent(self, claims: Sequence[Tuple[str, str, Dict, Optional[str]]], dedup_window: float) -> List[str]:
        """Record, right before the originates go out, which uuid each claim is dialed with.

        (claim_id, number, record, idempotency key or None) per claim; returns
        "ok", "dnc" or "duplicate" per claim (see MARK_SENT). After a crash a
        record in state "sent" is never dialed again; it is checked with
        uuid_exists instead.
        """
        if not claims:
            return []
        keys = [self.keys.inflight, self.keys.dnc]
        args = [int(dedup_window), len(claims)]
        for claim_id, number, record, seen in claims:
            index = 0
            if seen:
                keys.append(seen)
                index = len(keys) - 2
            args += [claim_id, number, orjson.dumps(record), index]
        return [as_text(x) for x in self._mark_sent(keys=keys, args=args)]

    def finish(self, items: Sequence) -> int:
        """End claims in one atomic step.

        Each item is (claim_id, line, result, rejected-or-None) optionally
        followed by (counters key, {field: increment}) and (redial key,
        score, member). The in-flight record goes, the line slot is freed,
        the result (and rejected record) is appended, counters move and a
        redial is scheduled, all only if the claim was not already ended, so
        retrying a batch after a lost reply is safe.
        """
        if not items:
            return 0
        keys = [self.keys.inflight, self.keys.results, self.keys.rejected]
        index = {}

        def key_index(key):
            if not key:
                return 0
            if key not in index:
                keys.append(key)
                index[key] = len(keys) - 3
            return index[key]

        args = [self.result_maxlen, self.rejected_maxlen, len(items)]
        for item in items:
            claim_id, line, result, rejected = item[:4]
            counters_key, counts = item[4] if len(item) > 4 and item[4] else (None, {})
            retry_key, retry_score, retry_member = item[5] if len(item) > 5 and item[5] else (None, 0, "")
            res = _flat_json(result) if result else ""
            rej = _flat_json(rejected) if rejected else ""
            cnt = orjson.dumps([x for kv in counts.items() for x in kv]) if counts else "[]"
            args += [claim_id, key_index(self.keys.line_lease(line) if line else None), res, rej,
                     key_index(counters_key), cnt, key_index(retry_key), retry_score, retry_member]
        return self._finish(keys=keys, args=args)

    def counters(self, owner) -> Dict[str, int]:
        return {as_text(k): int(v) for k, v in self.r.hgetall(self.keys.counters(owner)).items()}

    def reject(self, record: Dict):
        """A rejected record for bad configuration or messages (nothing was claimed)."""
        self.r.xadd(self.keys.rejected, _fields(record), maxlen=self.rejected_maxlen, approximate=True)

    # --- status ----------------------------------------------------------------------

    def heartbeat(self, ttl: float):
        """Say this host is alive for ``ttl`` seconds, and register it for takeover."""
        pipe = self.r.pipeline(transaction=False)
        pipe.set(self.keys.alive(), int(time.time()), ex=max(1, int(ttl)))
        # (``ttl`` is at least 3 heartbeats long: see HEARTBEAT_INTERVAL in daemon.py)
        pipe.sadd(self.keys.hosts, self.keys.host)
        pipe.execute()

    def gone_hosts(self) -> List[str]:
        """Other hosts with in-flight records and no heartbeat."""
        hosts = [as_text(h) for h in self.r.smembers(self.keys.hosts) if as_text(h) != self.keys.host]
        if not hosts:
            return []
        pipe = self.r.pipeline(transaction=False)
        for host in hosts:
            pipe.exists(self.keys.alive(host))
            pipe.hlen(self.keys.inflight_of(host))
        replies = pipe.execute()
        return [h for h, alive, n in zip(hosts, replies[::2], replies[1::2]) if not alive and n]

    def take_over(self, host: str, count: int = 500) -> List[str]:
        """Move up to ``count`` in-flight records of a gone host into ours (TAKE_OVER)."""
        return [as_text(x) for x in self._take_over(
            keys=[self.keys.inflight_of(host), self.keys.inflight, self.keys.alive(host)],
            args=[count, self.keys.host])]

    def write_status(self, fields: Dict, task_status: Dict[str, Dict], removed_tasks: Iterable[str] = ()):
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(self.keys.status, mapping=_fields(fields))
        if task_status:
            pipe.hset(self.keys.task_status, mapping={k: orjson.dumps(v) for k, v in task_status.items()})
        removed = list(removed_tasks)
        if removed:
            pipe.hdel(self.keys.task_status, *removed)
        pipe.execute()


# Connections of the main pool. Greenlets wait for a free one (a blocking
# pool) rather than fail with "Too many connections": redis-py's default pool
# refuses a 101st concurrent command.
POOL_SIZE = 64


def connect(config, max_connections=POOL_SIZE) -> redis.Redis:
    """The Redis client the config asks for: direct (``url``) or through Sentinel.

    Through Sentinel every new connection asks the Sentinels for the current
    master, so after a failover the next reconnect finds the new one.
    """
    common = dict(socket_timeout=config.redis_socket_timeout, socket_connect_timeout=config.redis_socket_timeout,
                  health_check_interval=15)
    if not config.redis_sentinels:
        pool = redis.BlockingConnectionPool.from_url(config.redis_url, max_connections=max_connections,
                                                     timeout=config.redis_socket_timeout, **common)
        return redis.Redis(connection_pool=pool)
    from urllib.parse import urlparse
    from redis.sentinel import Sentinel
    url = urlparse(config.redis_url)
    db = int((url.path or "/0").lstrip("/") or 0)
    sentinel_kwargs = {"socket_timeout": config.redis_socket_timeout}
    if config.redis_sentinel_password:
        sentinel_kwargs["password"] = config.redis_sentinel_password
    sentinel = Sentinel(list(config.redis_sentinels), sentinel_kwargs=sentinel_kwargs,
                        socket_timeout=config.redis_socket_timeout)
    # Sentinel pools do not block when full: size them for the worst case.
    return sentinel.master_for(config.redis_sentinel_service, password=url.password, db=db,
                               max_connections=max(max_connections, 1024), **common)
