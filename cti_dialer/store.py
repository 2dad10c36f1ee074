"""The Redis edge: every read or write of the dialer's keys, as domain operations.

Policy (what to dial, when, on which line) lives in the daemon; this module
only offers atomic operations. Key names come from ``keys.Keys``; the Lua
scripts and their KEYS/ARGV layouts are in ``scripts``.

A Store speaks for one daemon instance (``instance_id``, new at every start).
It writes that id as the ``owner`` of every in-flight record, and every
operation on an existing record acts only while the record is there and is
this instance's (see ``scripts.RECORDS``); otherwise it changes nothing and
answers ``scripts.LOST``: this host no longer owns the claim (another daemon
took it over, a sweep settled it, or another instance holds this host's
name). ``claim_host`` makes the instance the one running under its host
name; until it is called the name is neither taken nor refreshed.
"""
import logging
import math
import re
import time
import uuid
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import orjson
import redis

from . import messages, pacing, record_scripts, scripts
from .keys import Keys
from .model import as_text

log = logging.getLogger("cti_dialer.store")

# How long a host's name stays held without a refresh: three heartbeats of
# 2 s. It is not takeover_after (the heartbeat's, 300 s by default): a daemon
# restarted after a crash waits this long for its dead predecessor's name.
HOST_NAME_TTL = 6.0

# Instance ids travel inside record JSON and Lua string patterns unescaped.
_INSTANCE_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}\Z")


class Candidates:
    """The lines a claim may take, tier by tier: [[(line name, limit), ...], ...].

    ``positions[i]`` is the line group entry i belongs to (its index among
    the groups the candidates start from); by default each entry is a group
    of its own. A group with priority tiers gives one entry per tier, all
    with the group's position: the scripts try the entries in order, so a
    later tier is used only while the earlier ones are full.
    """

    def __init__(self, groups: Sequence[Sequence[Tuple[str, int]]], positions: Optional[Sequence[int]] = None,
                 entry_gates: Optional[Sequence[Tuple[str, float]]] = None,
                 line_gates: Optional[Dict[str, Tuple[float, float]]] = None):
        self.groups = [list(g) for g in groups]
        self.positions = list(positions) if positions is not None else list(range(len(self.groups)))
        # Per entry (group name, the group's rest in seconds); per line name
        # (rest seconds, probe interval seconds, 0 = no fault detection).
        self.entry_gates = list(entry_gates) if entry_gates is not None else None
        self.line_gates = dict(line_gates or {})

    def keys(self, keys: Keys) -> List[str]:
        """The lease key of every line, in the order the scripts read them."""
        return [keys.line_lease(name) for group in self.groups for name, _ in group]

    def __bool__(self):
        return any(self.groups)


class ClaimReply(NamedTuple):
    status: str
    items: List["scripts.Claimed"]
    wake: Optional[float]       # when a rest, an outage or the pace next allows a call (None: a call's end)


class Reservation(NamedTuple):
    status: str                 # scripts.OK, NO_LINE or PACED
    line: Optional[str]
    group: Optional[int]        # offset from the first candidate group
    wake: Optional[float]


class Store:
    """Domain operations on one Redis, for one host and domain."""

    def __init__(self, client: redis.Redis, keys: Keys, *, instance_id: Optional[str] = None,
                 result_maxlen=1_000_000, rejected_maxlen=100_000, result_channel: str = ""):
        self.r = client
        self.keys = keys
        self.instance_id = instance_id or str(uuid.uuid4())
        if not _INSTANCE_ID.match(self.instance_id):
            raise ValueError("instance id %r: 1-100 of A-Z a-z 0-9 . _ : -" % (self.instance_id,))
        self._holds_name = False        # claim_host succeeded: heartbeats keep (or take back) the name
        self.result_maxlen = result_maxlen
        self.rejected_maxlen = rejected_maxlen
        self.result_channel = result_channel    # each result also PUBLISHed here ("" = not)
        self._idle_tasks: Tuple = ()
        self._idle_probe: Optional[scripts.WorkProbe] = None

    # --- configuration ------------------------------------------------------------

    def read_tasks(self) -> Tuple[Dict[bytes, bytes], Dict[bytes, bytes]]:
        """Both task hashes (template, host) in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.keys.task_template)
        pipe.hgetall(self.keys.task_host)
        template, host = pipe.execute()
        return template, host

    def read_task(self, name: str) -> Tuple[Optional[bytes], Optional[bytes]]:
        """One task's (template, host) values, None where absent."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hget(self.keys.task_template, name)
        pipe.hget(self.keys.task_host, name)
        template, host = pipe.execute()
        return template, host

    def read_lines(self) -> Dict[bytes, bytes]:
        """Every line's JSON, by name."""
        return self.r.hgetall(self.keys.lines)

    def read_line(self, name) -> Optional[bytes]:
        """One line's JSON, or None."""
        return self.r.hget(self.keys.lines, name)

    def read_groups(self) -> Dict[bytes, bytes]:
        """Every line group's JSON, by name."""
        return self.r.hgetall(self.keys.groups)

    def read_group(self, name) -> Optional[bytes]:
        """One line group's JSON, or None."""
        return self.r.hget(self.keys.groups, name)

    # --- numbers --------------------------------------------------------------------

    def claim_numbers(self, queue: str, task: str, candidates: Candidates, claim_ids: Sequence[str],
                      now: float, lease_ttl: float, cps: float = 0.0) -> "ClaimReply":
        """Pop up to len(claim_ids) numbers, each with a line slot; see scripts.CLAIM_NUMBERS.

        Returns (status, [(claim_id, raw, line, group_index, from)], wake);
        from is "list" for a queue entry, "zset" for a due redial member.
        Status HOST_TAKEN: another instance holds this host's name, nothing
        claimed; PACED: the task's ``cps`` allows no call before ``wake``.
        """
        status, wake, items = scripts.claim_numbers(
            self.r, queue=queue, inflight=self.keys.inflight, redials=self.keys.retries(task),
            host_name=self.keys.instance(), line_state=self.keys.line_state, pace_key=self.keys.pace(task),
            leases=candidates.keys(self.keys), groups=candidates, task=task, owner=self.instance_id,
            claim_ids=claim_ids, now=now, expiry=now + lease_ttl, pace=pacing.task_pace(cps))
        return ClaimReply(status, items, wake)

    def tasks_with_work(self, tasks: Sequence[Tuple[str, str]]) -> List[int]:
        """Indexes of the (task, queue) pairs whose queue or redial set has work now (HAS_WORK).

        Asked up to a hundred times a second with the same idle tasks: the
        probe, with its key list, is rebuilt only when they change.
        """
        tasks = tuple(tasks)
        if tasks != self._idle_tasks or self._idle_probe is None:
            self._idle_probe = scripts.WorkProbe(self.r, [(queue, self.keys.retries(task)) for task, queue in tasks])
            self._idle_tasks = tasks
        return self._idle_probe()

    def wait_for_number(self, queue: str, timeout: float) -> bool:
        """Block until ``queue`` has a number (or ``timeout``); True when it has one.

        ``BLMOVE q q RIGHT RIGHT`` takes the oldest entry and puts it back
        where it was, in one atomic step: the queue's order and content are
        unchanged, and the call blocks on the server instead of polling.
        Needs Redis 6.2; raises redis.ResponseError on older servers.
        """
        return self.r.blmove(queue, queue, timeout, "RIGHT", "RIGHT") is not None

    def reserve_line(self, claim_id: str, candidates: Candidates, now: float, lease_ttl: float,
                     task: str = "", cps: float = 0.0) -> "Reservation":
        """A slot on the first group with an open line, at the task's pace (RESERVE_LINE).

        (OK, line, group_index, None), or (NO_LINE / PACED, None, None, wake).
        """
        return Reservation(*record_scripts.reserve_line(
            self.r, line_state=self.keys.line_state, pace_key=self.keys.pace(task), leases=candidates.keys(self.keys),
            groups=candidates, claim_id=claim_id, now=now, expiry=now + lease_ttl, pace=pacing.task_pace(cps)))

    def give_back_attempt(self, counter: str) -> int:
        """An attempt counted by MARK_SENT never rang: the number's daily count goes down again."""
        return record_scripts.give_back_attempt(self.r, counter=counter)

    def line_result(self, line: str, worked: bool, threshold: int, interval: float, now: float) -> Tuple[str, int]:
        """Count one call's verdict on a line's health (LINE_RESULT): (transition, consecutive failures)."""
        return record_scripts.line_result(self.r, line_state=self.keys.line_state, line=line, worked=worked,
                                          threshold=threshold, interval=interval, now=now)

    def line_health(self) -> Dict[str, Dict[str, float]]:
        """Per line with a rest, failures or an outage recorded: {"out": until, "failures": n, "rest": until}."""
        return messages.parse_line_state(self.r.hgetall(self.keys.line_state))

    def due_members(self, now: float, count: int) -> List[Tuple[bytes, float]]:
        """The earliest due schedule members (score <= now), then members scored +inf; O(log N + count).

        ``ZADD`` accepts -inf and +inf: -inf members come first among the
        due ones, and +inf members would never be due. Both are returned so
        that the caller rejects them rather than let them wait forever.
        """
        pipe = self.r.pipeline(transaction=False)
        pipe.zrangebyscore(self.keys.schedule_numbers, "-inf", now, start=0, num=count, withscores=True)
        pipe.zrangebyscore(self.keys.schedule_numbers, "+inf", "+inf", start=0, num=count, withscores=True)
        due, never = pipe.execute()
        return (due + never)[:count] if never else due

    def claim_scheduled(self, items: Sequence[Tuple[bytes, str, float, str, Candidates]], now: float,
                        lease_ttl: float, delay: float = 60):
        """Claim due schedule members (member, claim_id, expires, config, candidates) in one round trip.

        Per item, see scripts.CLAIM_SCHEDULED: ("ok", line, group_index),
        ("requeued", new score, None), ("rejected", reason, None) for a score
        that is not a finite number, ("error", message, None) when the script
        failed for that item (nothing of it written), or ("gone" /
        "host_taken" / "expired" / "dropped", None, None).
        """
        return scripts.claim_scheduled(
            self.r, schedule=self.keys.schedule_numbers, inflight=self.keys.inflight,
            host_name=self.keys.instance(), line_state=self.keys.line_state, owner=self.instance_id,
            items=[(member, claim_id, expires, config, candidates.keys(self.keys), candidates)
                   for member, claim_id, expires, config, candidates in items],
            now=now, expiry=now + lease_ttl, delay=delay)

    def take_rejected(self, member: bytes, claim_id: str, now: float, reason: str, config: str = "") -> bool:
        """Move a malformed member into the in-flight hash (state "rejected").

        False when it is gone already (another daemon took it) or another
        instance holds this host's name.
        """
        return scripts.take_rejected(self.r, schedule=self.keys.schedule_numbers, inflight=self.keys.inflight,
                                     host_name=self.keys.instance(), owner=self.instance_id, member=member,
                                     claim_id=claim_id, now=now, reason=reason, config=config) == scripts.OK

    def read_schedule_configs(self) -> Dict[bytes, bytes]:
        """Every schedule config's JSON, by name."""
        return self.r.hgetall(self.keys.schedule_configs)

    def read_schedule_config(self, name) -> Optional[bytes]:
        """One schedule config's JSON, or None."""
        return self.r.hget(self.keys.schedule_configs, name)

    def update_inflight(self, claim_id: str, record: Dict, expected_uuid: str = "") -> str:
        """Rewrite a claim's in-flight record (parked between two tries): "ok", "lost" when no longer
        ours, "stale" when ``expected_uuid`` is given and the record holds another try by now."""
        return record_scripts.update_record(self.r, inflight=self.keys.inflight, host_name=self.keys.instance(),
                                            owner=self.instance_id, claim_id=claim_id, record=record,
                                            expected_uuid=expected_uuid)

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
        """Free a claim's slot on ``line``."""
        self.r.zrem(self.keys.line_lease(line), claim_id)

    def renew_leases(self, leases: Iterable[Tuple[str, str]], now: float, lease_ttl: float) -> List[str]:
        """Push the expiry of live calls' line slots forward (line, claim id); see RENEW_LEASES.

        Returns the claim ids no longer ours (record gone or another
        instance's): their leases are left alone.
        """
        _, lost = record_scripts.renew_leases(self.r, inflight=self.keys.inflight, host_name=self.keys.instance(),
                                       owner=self.instance_id, expiry=now + lease_ttl,
                                       leases=[(self.keys.line_lease(line), claim_id) for line, claim_id in leases])
        return lost

    def requeue(self, claim_id: str, record: Dict) -> str:
        """Put a never-dialed claimed number back where it will be taken next (once).

        Returns OK, or LOST when the record is gone (settled already, or
        taken over) or another instance's: then nothing moves.
        """
        raw = record.get("raw")
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        line = record.get("line")
        back = record.get("back") or ("zset" if record.get("kind") == "schedule" else "list")
        score = float(record.get("score") or 0)
        return record_scripts.requeue(self.r, inflight=self.keys.inflight, host_name=self.keys.instance(),
                               owner=self.instance_id, claim_id=claim_id, home=record["queue"], raw=raw, back=back,
                               score=score if math.isfinite(score) else 0.0,
                               lease=self.keys.line_lease(line) if line else None, seen=record.get("seen"))

    def mark_sent(self, claims: Sequence[Tuple], dedup_window: float, cap: int = 0) -> List[str]:
        """Record, right before the originates go out, which uuid each claim is dialed with.

        (claim_id, number, record, idempotency key or None[, attempt counter
        key or None]) per claim; returns "ok", "lost", "dnc", "capped" or
        "duplicate" per claim (see record_scripts.MARK_SENT); ``cap`` is
        [dialer] daily_attempt_cap.
        LOST: the record is gone or another instance's, so the claim must not
        be dialed, requeued or recorded by this host. After a crash a record
        in state "sent" is never dialed again; it is checked with uuid_exists
        instead.
        """
        if not claims:
            return []
        return record_scripts.mark_sent(self.r, inflight=self.keys.inflight, dnc=self.keys.dnc,
                                 host_name=self.keys.instance(), owner=self.instance_id,
                                 claims=[(*c, None) if len(c) == 4 else c for c in claims],
                                 window=dedup_window, cap=cap)

    def finish(self, items: Sequence) -> record_scripts.Finished:
        """End claims in one atomic step.

        Each item is (claim_id, line, result, rejected-or-None) optionally
        followed by (counters key, {field: increment}) and (redial key,
        score, member). The in-flight record goes, the line slot is freed,
        the result (and rejected record) is appended, counters move and a
        redial is scheduled, all only if the record is still there and ours,
        so retrying a batch after a lost reply is safe. Returns (written,
        claim ids not written because their record is gone or another
        instance's).
        """
        if not items:
            return record_scripts.Finished(0, [])
        endings = []
        for item in items:
            claim_id, line, result, rejected = item[:4]
            counters_key, counts = item[4] if len(item) > 4 and item[4] else (None, {})
            redial_key, redial_score, redial_member = item[5] if len(item) > 5 and item[5] else (None, 0, "")
            endings.append(record_scripts.Ending(claim_id, self.keys.line_lease(line) if line else None, result, rejected,
                                          counters_key, counts, redial_key, redial_score, redial_member))
        return record_scripts.finish(self.r, inflight=self.keys.inflight, results=self.keys.results,
                              rejected=self.keys.rejected, host_name=self.keys.instance(),
                              results_maxlen=self.result_maxlen, rejected_maxlen=self.rejected_maxlen,
                              owner=self.instance_id, endings=endings, channel=self.result_channel)

    def reject(self, record: Dict):
        """A rejected record for bad configuration or messages (nothing was claimed)."""
        self.r.xadd(self.keys.rejected, record_scripts.as_fields(record), maxlen=self.rejected_maxlen, approximate=True)

    # --- status ----------------------------------------------------------------------

    def claim_host(self, instance_id: Optional[str] = None, ttl: float = HOST_NAME_TTL) -> record_scripts.HostHold:
        """Hold this host's name for this instance (at start, before anything else touches Redis).

        Returns (ok, holder, ttl, adopted). ok: the name is ours for ``ttl``
        seconds, and when it was free, every record of this host's in-flight
        hash written by an earlier instance is now ours (``adopted``), to be
        recovered. Not ok: another instance holds it (``holder`` is its id,
        ``ttl`` the seconds its claim has left) and nothing was written; if
        that instance is dead its claim expires within ``ttl``, while a live
        one keeps refreshing it.
        """
        if instance_id is not None and instance_id != self.instance_id:
            raise ValueError("this Store speaks for instance %s, not %s" % (self.instance_id, instance_id))
        hold = self._hold(ttl, None, True)
        self._holds_name = self._holds_name or hold.ok
        return hold

    def heartbeat(self, ttl: float, name_ttl: float = HOST_NAME_TTL) -> bool:
        """Say this host is alive for ``ttl`` seconds, register it for takeover, and keep its name.

        Returns False (and writes nothing) when another instance holds this
        host's name: this one must stop dialing. After ``claim_host``, a name
        that expired while Redis was out of reach is taken again, adopting
        what the hash holds; before it, the name is only checked.
        """
        # (``ttl`` is at least 3 heartbeats long: see HEARTBEAT_INTERVAL in housekeeping.py)
        hold = self._hold(name_ttl, ttl, self._holds_name)
        if not hold.ok:
            log.error("host name %s is held by instance %s, not this one (%s)", self.keys.host, hold.holder,
                      self.instance_id)
        return hold.ok

    def release_host(self) -> bool:
        """Give this host's name up at a clean stop, so the next start need not wait; False if not ours."""
        self._holds_name = False
        return record_scripts.release_host(self.r, name=self.keys.instance(), owner=self.instance_id)

    def _hold(self, name_ttl: float, heartbeat_ttl: Optional[float], hold_name: bool) -> record_scripts.HostHold:
        hold = record_scripts.hold_host(self.r, name=self.keys.instance(), inflight=self.keys.inflight,
                                 alive=self.keys.alive(), hosts=self.keys.hosts, owner=self.instance_id,
                                 host=self.keys.host, name_ttl=name_ttl, heartbeat_ttl=heartbeat_ttl, now=time.time(),
                                 hold=hold_name)
        if hold.adopted:
            log.warning("host name %s taken by instance %s: %d in-flight record(s) of an earlier instance are "
                        "now its own", self.keys.host, self.instance_id, hold.adopted)
        return hold

    def gone_hosts(self) -> List[str]:
        """Other hosts with in-flight records, no heartbeat and no instance holding their name."""
        hosts = [as_text(h) for h in self.r.smembers(self.keys.hosts) if as_text(h) != self.keys.host]
        if not hosts:
            return []
        pipe = self.r.pipeline(transaction=False)
        for host in hosts:
            pipe.exists(self.keys.alive(host), self.keys.instance(host))
            pipe.hlen(self.keys.inflight_of(host))
        replies = pipe.execute()
        return [h for h, alive, n in zip(hosts, replies[::2], replies[1::2]) if not alive and n]

    def take_over(self, host: str, count: int = 500) -> List[str]:
        """Move up to ``count`` in-flight records of a gone host into ours, as ours (record_scripts.TAKE_OVER)."""
        return record_scripts.take_over(self.r, theirs=self.keys.inflight_of(host), ours=self.keys.inflight,
                                 heartbeat=self.keys.alive(host), their_name=self.keys.instance(host),
                                 our_name=self.keys.instance(), owner=self.instance_id, count=count)

    def queue_sizes(self, tasks: Sequence[Tuple[str, Optional[str]]]) -> Dict[str, Tuple[int, int]]:
        """(numbers queued, redials pending) per (task, queue or None), in one round trip.

        A key of the wrong type counts -1 instead of failing every task's
        figures (the dispatcher reports that task as broken).
        """
        pipe = self.r.pipeline(transaction=False)
        for task, queue in tasks:
            if queue:
                pipe.llen(queue)
            pipe.zcard(self.keys.retries(task))
        replies = iter([-1 if isinstance(x, redis.ResponseError) else x
                        for x in (pipe.execute(raise_on_error=False) if tasks else ())])
        return {task: (next(replies) if queue else 0, next(replies)) for task, queue in tasks}

    def status_task_names(self) -> List[bytes]:
        """The tasks this host's status hash lists now (an earlier run may have left some)."""
        return self.r.hkeys(self.keys.task_status)

    def write_status(self, fields: Dict, task_status: Dict[str, bytes], removed_tasks: Iterable[str] = ()):
        """This host's status hash and its tasks' (values encoded by ``messages``)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(self.keys.status, mapping=record_scripts.as_fields(fields))
        if task_status:
            pipe.hset(self.keys.task_status, mapping=dict(task_status))
        removed = list(removed_tasks)
        if removed:
            pipe.hdel(self.keys.task_status, *removed)
        pipe.execute()


# Connections of the main pool. Greenlets wait for a free one (a blocking
# pool) rather than fail with "Too many connections": redis-py's default pool
# refuses a 101st concurrent command.
POOL_SIZE = 64


def connect(config, max_connections=POOL_SIZE, read_timeout=None) -> redis.Redis:
    """The Redis client the config asks for: direct (``url``) or through Sentinel.

    Through Sentinel every new connection asks the Sentinels for the current
    master, so after a failover the next reconnect finds the new one.
    ``read_timeout`` (default ``socket_timeout``) is for clients whose
    commands block on the server longer than that.
    """
    common = dict(socket_timeout=read_timeout or config.redis_socket_timeout,
                  socket_connect_timeout=config.redis_socket_timeout, health_check_interval=15)
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
