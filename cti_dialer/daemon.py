"""The daemon: wiring of store, ESL, configuration and one dispatcher per task.

Greenlets:
- one ``_task_loop`` per task: claims numbers (with a line slot each) and
  originates them while the task is enabled, inside its window and under its
  limit;
- ``_event_loop``: follows BACKGROUND_JOB / ANSWER / HANGUP_COMPLETE, decides
  failover, throttle back-off or the end of an attempt;
- ``_writer_loop``: writes finished attempts to Redis in batches and keeps
  them in memory while Redis is away;
- ``_watch_config``: pub/sub config_change, plus a full reread after every
  reconnect; ``_housekeeping``: periodic reread, lease renewal, job timeouts,
  status.
Signal handlers only set ``stopping``.
"""
import collections
import dataclasses
import datetime
import logging
import os
import signal
import socket
import time
import uuid as uuidlib
from typing import Dict, List, Optional

import gevent
import gevent.event
import gevent.queue
import orjson
import redis

from . import __version__, call, keys as keymod, model, originate, timewindow
from .call import Attempt, Verdict
from .esl import Answered, Disconnected, EslClient, EslError, HungUp, JobResult
from .store import Candidates, Store

log = logging.getLogger("cti_dialer")

SCHEDULE_PREFIX = "schedule:"
# In-flight states whose outcome was decided before the result was written.
DECIDED_STATES = {
    "expired": (call.CAUSE_EXPIRED, Verdict.DROPPED),
    "dropped": (call.CAUSE_NO_LINE, Verdict.DROPPED),
    "rejected": (call.CAUSE_REJECTED, Verdict.REJECTED),
}
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, OSError)


@dataclasses.dataclass
class Claim:
    """A number this host took from Redis and has not finished."""
    claim_id: str
    task: str
    queue: str
    raw: bytes
    entry: Optional[model.NumberEntry]
    line: Optional[str]
    group: int
    claimed_at: float
    attempt_no: int = 1
    attempt: Optional[Attempt] = None
    record: Dict = dataclasses.field(default_factory=dict)
    kind: str = "queue"          # "queue": task is a task name; "schedule": a schedule config name
    score: float = 0.0           # schedule members: the time they were due
    expires: float = 0.0

    @property
    def owner(self):
        """Key for per-task counters; schedule configs get their own namespace."""
        return self.task if self.kind == "queue" else SCHEDULE_PREFIX + self.task


class Daemon:
    def __init__(self, config, redis_client=None):
        self.config = config
        self.host = config.dialer_host
        self.domain = config.dialer_domain
        self.tz = config.dialer_timezone
        self.keys = keymod.Keys(self.host, self.domain)
        self.redis = redis_client or redis.Redis.from_url(
            config.redis_url, socket_timeout=config.redis_socket_timeout,
            socket_connect_timeout=config.redis_socket_timeout, health_check_interval=15)
        self.store = Store(self.redis, self.keys, result_maxlen=config.dialer_result_maxlen,
                           rejected_maxlen=config.dialer_rejected_maxlen)
        self.events = gevent.queue.Queue()
        self.esl = EslClient(config.esl_host, config.esl_port, config.esl_password,
                             connect_timeout=config.esl_connect_timeout,
                             command_timeout=config.esl_command_timeout,
                             reconnect_max=config.esl_reconnect_max,
                             on_event=self.events.put_nowait, on_connect=self._on_esl_connect)
        self.stopping = gevent.event.Event()
        self.redis_ok = gevent.event.Event()
        self.config_loaded = gevent.event.Event()
        self.recovered = gevent.event.Event()
        # configuration as last read
        self.tasks: Dict[str, model.Task] = {}
        self.task_errors: Dict[str, str] = {}
        self.lines: Dict[str, model.Line] = {}
        self.groups: Dict[str, model.LineGroup] = {}
        self.schedule_configs: Dict[str, model.ScheduleConfig] = {}
        self.schedule_config_errors: Dict[str, str] = {}
        self.schedule_wake = gevent.event.Event()
        self._reported = {}
        # live state
        self.claims: Dict[str, Claim] = {}
        self.by_uuid: Dict[str, Claim] = {}
        self.active = collections.Counter()
        self.stats = collections.defaultdict(collections.Counter)
        self.runners: Dict[str, gevent.Greenlet] = {}
        self.wake: Dict[str, gevent.event.Event] = {}
        self.line_starved = set()
        self.throttle_until = 0.0
        self.throttle_delay = 0.0
        self.pending_writes: List = []
        self.pending_requeues: List = []
        self.write_wake = gevent.event.Event()
        self.started_at = time.time()
        self._greenlets: List[gevent.Greenlet] = []
        self._ready_logged = False

    # --- lifecycle -----------------------------------------------------------------

    def run(self):
        """Run until SIGTERM/SIGINT (or ``stop()``); returns the exit status."""
        gevent.signal_handler(signal.SIGTERM, self.stopping.set)
        gevent.signal_handler(signal.SIGINT, self.stopping.set)
        self.start()
        self.stopping.wait()
        self.shutdown()
        return 0

    def start(self):
        log.info("cti-dialer %s starting: host=%s domain=%s redis=%s esl=%s:%s",
                 __version__, self.host, self.domain, _safe_url(self.config.redis_url),
                 self.config.esl_host, self.config.esl_port)
        self.esl.start()
        for fn in (self._watch_config, self._event_loop, self._writer_loop, self._housekeeping,
                   self._recover_then_dispatch, self._schedule_loop):
            self._greenlets.append(gevent.spawn(self._supervise, fn))

    def stop(self):
        self.stopping.set()

    def shutdown(self):
        log.info("stopping: no new claims; %d call(s) stay up on the switch and are followed after restart",
                 len(self.claims))
        for runner in list(self.runners.values()):
            runner.kill(block=False)
        deadline = time.time() + self.config.dialer_drain_timeout
        self.write_wake.set()
        while self.pending_writes and time.time() < deadline:
            gevent.sleep(0.05)
        if self.pending_writes:
            log.error("%d result(s) not written to Redis before exit; their numbers stay in-flight "
                      "and are recovered at the next start", len(self.pending_writes))
        try:
            self.store.write_status({"state": "stopped", "heartbeat": time.time()}, {})
        except REDIS_ERRORS:
            pass
        for g in self._greenlets:
            g.kill(block=False)
        self.esl.stop()
        log.info("stopped")

    def _supervise(self, fn):
        """Restart a loop that died of a bug, after logging it; never spin."""
        while not self.stopping.is_set():
            try:
                fn()
                return
            except gevent.GreenletExit:
                return
            except Exception:
                log.exception("%s failed; restarting it in 1s", fn.__name__)
                self.stopping.wait(1)

    def _maybe_ready(self):
        if not self._ready_logged and self.redis_ok.is_set() and self.esl.ready.is_set() \
                and self.config_loaded.is_set():
            self._ready_logged = True
            log.info("ready: connected to Redis, subscribed to %s and %s, logged in to ESL",
                     self.keys.channel_all, self.keys.channel_host)

    # --- configuration -------------------------------------------------------------

    def _report(self, kind, name, source, raw, reason):
        """A rejected record for bad configuration, once per distinct problem."""
        token = (kind, name, reason)
        if self._reported.get((kind, name)) == token:
            return
        self._reported[(kind, name)] = token
        log.error("rejected %s %r from %s: %s", kind, name, source, reason)
        try:
            self.store.reject({"ts": time.time(), "host": self.host, "kind": kind, "name": name,
                               "source": source, "raw": model.raw_repr(raw), "reason": reason})
        except REDIS_ERRORS:
            self._reported.pop((kind, name), None)

    def _clear_report(self, kind, name):
        self._reported.pop((kind, name), None)

    def _set_task(self, name, template_raw, host_raw):
        try:
            task = model.merge_task(name, template_raw, host_raw, self.tz)
        except model.ModelError as exc:
            self.task_errors[name] = str(exc)
            self.tasks.pop(name, None)
            source = self.keys.task_host if host_raw is not None else self.keys.task_template
            self._report("task", name, source, host_raw if host_raw is not None else template_raw, str(exc))
            self._ensure_runner(name)
            return
        self.task_errors.pop(name, None)
        self._clear_report("task", name)
        if task is None:
            self.tasks.pop(name, None)
        else:
            if self.tasks.get(name) != task:
                log.info("task %r loaded (%s): limit=%d enable=%s queue=%r groups=%s",
                         name, task.source, task.limit, task.enable, task.number_queue,
                         ",".join(task.line_groups))
            self.tasks[name] = task
        self._ensure_runner(name)

    def _set_entry(self, kind, table, key, parse, name, raw):
        """Replace one parsed line or group; a bad one is dropped and reported."""
        name = _text(name)
        if raw is None:
            table.pop(name, None)
            self._clear_report(kind, name)
            return
        try:
            table[name] = parse(name, raw)
            self._clear_report(kind, name)
        except model.ModelError as exc:
            table.pop(name, None)
            self._report(kind, name, key, raw, str(exc))

    def _set_line(self, name, raw):
        self._set_entry("line", self.lines, self.keys.lines, model.parse_line, name, raw)

    def _set_group(self, name, raw):
        self._set_entry("group", self.groups, self.keys.groups, model.parse_group, name, raw)

    def _set_schedule_config(self, name, raw):
        name = _text(name)
        if raw is None:
            self.schedule_configs.pop(name, None)
            self._clear_report("schedule_config", name)
            return
        try:
            config = model.parse_schedule_config(name, raw)
        except model.ModelError as exc:
            self.schedule_configs.pop(name, None)
            self.schedule_config_errors[name] = str(exc)
            self._report("schedule_config", name, self.keys.schedule_configs, raw, str(exc))
            return
        self.schedule_config_errors.pop(name, None)
        self._clear_report("schedule_config", name)
        self.schedule_configs[name] = config
        self.schedule_wake.set()

    def reload_all(self):
        """Reread every task, line, group and schedule config (after a reconnect and on a timer)."""
        template, host = self.store.read_tasks()
        lines = self.store.read_lines()
        groups = self.store.read_groups()
        configs = self.store.read_schedule_configs()
        for name in (set(self.schedule_configs) | set(self.schedule_config_errors)) - {_text(n) for n in configs}:
            self.schedule_config_errors.pop(name, None)
            self._set_schedule_config(name, None)
        for name, raw in configs.items():
            self._set_schedule_config(name, raw)
        for name in set(self.lines) - {_text(n) for n in lines}:
            self._set_line(name, None)
        for name, raw in lines.items():
            self._set_line(name, raw)
        for name in set(self.groups) - {_text(n) for n in groups}:
            self._set_group(name, None)
        for name, raw in groups.items():
            self._set_group(name, raw)
        names = {_text(n) for n in template} | {_text(n) for n in host}
        for name in (set(self.tasks) | set(self.task_errors)) - names:
            self._set_task(name, None, None)
        for name in sorted(names):
            self._set_task(name, template.get(name.encode()), host.get(name.encode()))
        self._wake_all()
        self.config_loaded.set()
        self._maybe_ready()

    def apply_change(self, channel, data):
        """Handle one config_change message; bad messages are rejected, not fatal."""
        try:
            msg = orjson.loads(data)
            if not isinstance(msg, dict):
                raise ValueError("not a JSON object")
            if msg.get("type") != "config_change":
                raise ValueError("type must be 'config_change', not %r" % (msg.get("type"),))
            table = msg.get("table")
            key = msg.get("key")
            if key is not None and (not isinstance(key, str) or not key):
                raise ValueError("key must be a non-empty string when present")
        except (ValueError, orjson.JSONDecodeError) as exc:
            self._report_message(channel, data, str(exc))
            return
        if table == keymod.TASK_TABLE:
            if key is None:
                self.reload_all()
            else:
                template, host = self.store.read_task(key)
                self._set_task(key, template, host)
                self._wake(key)
        elif table == keymod.LINE_TABLE:
            if key is None:
                self.reload_all()
            else:
                self._set_line(key, self.store.read_line(key))
                self._wake_all()
        elif table == keymod.GROUP_TABLE:
            if key is None:
                self.reload_all()
            else:
                self._set_group(key, self.store.read_group(key))
                self._wake_all()
        elif table == keymod.SCHEDULE_CONFIG_TABLE:
            if key is None:
                self.reload_all()
            else:
                raw = self.store.read_schedule_config(key)
                if raw is None:
                    self.schedule_config_errors.pop(key, None)
                self._set_schedule_config(key, raw)
        else:
            self._report_message(channel, data, "unknown table %r" % (table,))
            return
        log.info("config_change on %s: table=%s key=%s applied", channel, table, key)

    def _report_message(self, channel, data, reason):
        log.error("rejected message on %s: %s", channel, reason)
        try:
            self.store.reject({"ts": time.time(), "host": self.host, "kind": "message", "name": "",
                               "source": channel, "raw": model.raw_repr(data), "reason": reason})
        except REDIS_ERRORS:
            pass

    def _watch_config(self):
        delay = 0.5
        while not self.stopping.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.keys.channel_all, self.keys.channel_host)
                # Messages sent while we were away are lost: reread everything
                # once subscribed, so nothing between the two is missed.
                self.reload_all()
                if not self.redis_ok.is_set():
                    log.info("Redis connected")
                self.redis_ok.set()
                self.write_wake.set()
                self._maybe_ready()
                delay = 0.5
                while not self.stopping.is_set():
                    msg = pubsub.get_message(timeout=1.0)
                    if msg and msg.get("type") == "message":
                        self.apply_change(_text(msg["channel"]), msg["data"])
            except REDIS_ERRORS as exc:
                self.redis_ok.clear()
                log.warning("Redis unavailable (%s); retrying in %.1fs", exc, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, 10.0)
            finally:
                try:
                    pubsub.close()
                except Exception:
                    pass

    # --- dispatch ------------------------------------------------------------------

    def _wake(self, name):
        event = self.wake.get(name)
        if event is not None:
            event.set()

    def _wake_all(self):
        for event in self.wake.values():
            event.set()

    def _ensure_runner(self, name):
        runner = self.runners.get(name)
        if runner is None or runner.dead:
            if name in self.tasks and self.recovered.is_set() and not self.stopping.is_set():
                self.wake[name] = gevent.event.Event()
                self.runners[name] = gevent.spawn(self._task_loop, name)
        else:
            self._wake(name)

    def _recover_then_dispatch(self):
        """Recover this host's in-flight numbers once, then start the task loops."""
        while not self.stopping.is_set():
            self.esl.ready.wait(1)
            self.redis_ok.wait(1)
            if not (self.esl.ready.is_set() and self.redis_ok.is_set()):
                continue
            try:
                self._recover()
                break
            except (EslError, *REDIS_ERRORS) as exc:
                log.warning("recovery postponed: %s", exc)
                self.stopping.wait(1)
        self.recovered.set()
        for name in list(self.tasks):
            self._ensure_runner(name)

    def _recover(self):
        records = self.store.inflight()
        if not records:
            return
        requeued = followed = unknown = settled = 0
        for claim_id, rec in records.items():
            if claim_id in self.claims:
                continue
            state = rec.get("state")
            if state == "claimed":
                self.store.requeue(claim_id, rec)
                requeued += 1
                continue
            claim = self._claim_from_record(claim_id, rec)
            if state in DECIDED_STATES:
                # Decided before the crash, result not yet written: write it now.
                cause, verdict = DECIDED_STATES[state]
                if state == "rejected":
                    self._reject_claim(claim, rec.get("reason") or "rejected before a restart")
                else:
                    self._finish(claim, cause, verdict, tracked=False)
                settled += 1
                continue
            exists = _is_uuid(rec.get("uuid")) and self._uuid_exists(rec["uuid"])
            claim.attempt = Attempt(uuid=rec.get("uuid", ""), line=claim.line or "", group_index=claim.group,
                                    sent_at=float(rec.get("sent_at", 0)))
            if exists:
                claim.attempt.job_done, claim.attempt.job_ok = True, True
                self._track(claim)
                followed += 1
            else:
                claim.attempt.job_done, claim.attempt.job_ok = True, False
                claim.attempt.job_cause = call.CAUSE_UNKNOWN
                self._finish(claim, call.CAUSE_UNKNOWN, Verdict.UNKNOWN)
                unknown += 1
        log.info("recovered in-flight numbers: %d requeued (never dialed), %d still up and followed, "
                 "%d ended while we were away (recorded as UNKNOWN), %d decided results written",
                 requeued, followed, unknown, settled)

    def _claim_from_record(self, claim_id, rec):
        raw = rec.get("raw", "")
        raw = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
        kind = rec.get("kind", "queue")
        entry, expires = _parse_or_none(raw), 0.0
        if kind == "schedule":
            try:
                scheduled = model.parse_scheduled(raw)
                entry, expires = scheduled.entry, scheduled.expires
            except model.ModelError:
                entry = None
        return Claim(claim_id=claim_id, task=rec.get("task", ""), queue=rec.get("queue", ""), raw=raw,
                     entry=entry, line=rec.get("line") or None, group=int(rec.get("group", 0)),
                     claimed_at=float(rec.get("claimed_at", 0)), attempt_no=int(rec.get("attempt", 1)),
                     record=rec, kind=kind, score=float(rec.get("score") or 0), expires=expires)

    def _candidates(self, task, start_group=0) -> Candidates:
        groups = []
        for gname in task.line_groups[start_group:]:
            group = self.groups.get(gname)
            lines = []
            if group is not None:
                for lname in group.lines:
                    line = self.lines.get(lname)
                    if line is not None and line.enable and line.limit > 0:
                        lines.append((lname, line.limit))
            groups.append(lines)
        # Groups keep their positions (empty ones included) so the group
        # index the scripts return is the task's group index.
        return Candidates(groups)

    def task_state(self, name, now=None):
        """(state, reason) of a task on this host, for status records."""
        if name in self.task_errors:
            return "error", self.task_errors[name]
        task = self.tasks.get(name)
        if task is None:
            return "deleted", ""
        if not task.enable:
            return "paused", "enable is false"
        now = now or datetime.datetime.now(self.tz)
        wstate = timewindow.state(task.window, now)
        if wstate == timewindow.State.FINISHED:
            return "finished", "past stop_time"
        if wstate != timewindow.State.OPEN:
            return "waiting", wstate.value
        if not self._candidates(task):
            return "waiting", "no enabled line in its line groups"
        return "running", ""

    def _task_loop(self, name):
        wake = self.wake[name]
        while not self.stopping.is_set():
            task = self.tasks.get(name)
            if task is None:
                # Deleted or broken: stop claiming; calls already up finish on their own.
                self.runners.pop(name, None)
                self.wake.pop(name, None)
                return
            wait = self._dispatch_once(task)
            if wait:
                wake.wait(wait)
                wake.clear()

    def _dispatch_once(self, task) -> float:
        """Start what may be started now; return how long to wait before the next look."""
        if not (self.esl.ready.is_set() and self.redis_ok.is_set()):
            return 0.5
        now = time.time()
        if now < self.throttle_until:
            return self.throttle_until - now
        state, _ = self.task_state(task.name)
        if state != "running":
            return 1.0
        free = task.limit - self.active[task.name]
        if free <= 0:
            return 1.0      # woken sooner when one of its calls ends
        candidates = self._candidates(task)
        ids = [str(uuidlib.uuid4()) for _ in range(min(free, self.config.dialer_claim_batch))]
        try:
            status, items = self.store.claim_numbers(task.number_queue, task.name, candidates, ids,
                                                     now, self.config.dialer_line_lease_ttl)
        except REDIS_ERRORS as exc:
            log.warning("claim for task %r failed: %s", task.name, exc)
            return 1.0
        if items:
            self._originate_claims(task, items, now)
        if status == "no_line":
            self.line_starved.add(task.name)
            return 1.0
        if status == "empty":
            return self.config.dialer_idle_poll_interval
        return 0

    def _originate_claims(self, task, items, now):
        claims, commands, bad = [], {}, []
        for claim_id, raw, line_name, group in items:
            claim = Claim(claim_id=claim_id, task=task.name, queue=task.number_queue, raw=raw, entry=None,
                          line=line_name, group=group, claimed_at=now)
            try:
                claim.entry = model.parse_number(raw)
                line = self.lines[line_name]
                cmd = self._command(task, claim, line)
            except (model.ModelError, originate.UnsafeValue, KeyError) as exc:
                bad.append((claim, str(exc) if not isinstance(exc, KeyError) else "line vanished"))
                continue
            claims.append(claim)
            commands[claim_id] = cmd
        for claim, reason in bad:
            self._reject_claim(claim, reason)
        self._send(claims, commands)

    def _source(self, claim):
        """The task or schedule config a claim dials for (None once deleted or broken)."""
        if claim.kind == "schedule":
            return self.schedule_configs.get(claim.task)
        return self.tasks.get(claim.task)

    def _command(self, source, claim, line):
        uuid = str(uuidlib.uuid4())
        claim.attempt = Attempt(uuid=uuid, line=line.name, group_index=claim.group, sent_at=time.time())
        # number < task@host < task@template < line (queue); number < config < line (schedule)
        variables = model.channel_variables(claim.entry.variables, *source.variable_layers(),
                                            line.variables, own={"origination_uuid": uuid})
        cmd = originate.build_originate(variables, line.gateway, line.prefix, claim.entry.number,
                                        source.extension, source.dialplan, source.context)
        return originate.build_bgapi(cmd, uuid)

    def _record(self, claim):
        return {"kind": claim.kind, "task": claim.task, "queue": claim.queue,
                "raw": claim.raw.decode("utf-8", "surrogateescape"), "line": claim.line, "group": claim.group,
                "state": "sent", "uuid": claim.attempt.uuid, "claimed_at": claim.claimed_at,
                "sent_at": claim.attempt.sent_at, "attempt": claim.attempt_no, "score": claim.score}

    def _send(self, claims, commands):
        """Mark the claims sent in Redis, then write their originates."""
        if not claims:
            return
        try:
            self.store.mark_sent({c.claim_id: self._record(c) for c in claims})
        except REDIS_ERRORS as exc:
            # Not marked: nothing was sent, so the numbers go back on recovery.
            # Nothing was sent: put the numbers back as soon as Redis answers.
            log.warning("could not mark %d claim(s) sent (%s); requeueing them", len(claims), exc)
            for claim in claims:
                rec = self._record(claim)
                rec["state"] = "claimed"
                self.pending_requeues.append((claim.claim_id, rec))
            self.write_wake.set()
            return
        replies = []
        for claim in claims:
            self._track(claim)
            self.stats[claim.owner]["dialed"] += 1
            try:
                replies.append((claim, self.esl.send_async(commands[claim.claim_id])))
            except EslError:
                replies.append((claim, None))
            log.debug("originate %s task=%s line=%s uuid=%s attempt=%d", claim.entry.number, claim.task,
                      claim.line, claim.attempt.uuid, claim.attempt_no)
        for claim, result in replies:
            if result is None:
                continue
            try:
                reply = self.esl.wait(result)
                text = reply.headers.get("Reply-Text", "")
                if text.startswith("-ERR"):
                    self.events.put_nowait(JobResult(claim.attempt.uuid, text))
            except EslError:
                # Unknown whether it reached the switch: followed until
                # reconnect, then settled with uuid_exists.
                pass

    def _requeue_later(self, claim):
        rec = self._record(claim)
        rec["state"] = "claimed"
        self.pending_requeues.append((claim.claim_id, rec))
        self.write_wake.set()
        self.by_uuid[claim.attempt.uuid] = claim
        self._untrack(claim)

    def _track(self, claim):
        self.claims[claim.claim_id] = claim
        self.by_uuid[claim.attempt.uuid] = claim
        self.active[claim.owner] += 1

    def _untrack(self, claim):
        self.claims.pop(claim.claim_id, None)
        if claim.attempt is not None:
            self.by_uuid.pop(claim.attempt.uuid, None)
        if self.active[claim.owner] > 0:
            self.active[claim.owner] -= 1
        self._wake(claim.owner)
        if self.line_starved:
            starved, self.line_starved = self.line_starved, set()
            for name in starved:
                self._wake(name)

    def _reject_claim(self, claim, reason):
        log.error("rejected number entry from %s (%s %r): %s", claim.queue,
                  "task" if claim.kind == "queue" else "schedule config", claim.task, reason)
        ts = time.time()
        rejected = {"ts": ts, "host": self.host, "kind": "number", "name": claim.task, "source": claim.queue,
                    "raw": model.raw_repr(claim.raw), "reason": reason}
        result = self._result(claim, call.CAUSE_REJECTED, Verdict.REJECTED, ts)
        result["error"] = reason
        self._queue_write(claim.claim_id, claim.line, result, rejected)
        self.stats[claim.owner]["rejected"] += 1

    # --- scheduled calls ---------------------------------------------------------------

    def _schedule_loop(self):
        """Dial due members of the schedule set; poll cost is O(log N) in the set's size."""
        self.recovered.wait()
        while not self.stopping.is_set():
            more = False
            if self.esl.ready.is_set() and self.redis_ok.is_set() and time.time() >= self.throttle_until:
                try:
                    more = self._schedule_once(time.time())
                except REDIS_ERRORS as exc:
                    log.warning("schedule poll failed: %s", exc)
            if not more:
                self.schedule_wake.wait(self.config.dialer_schedule_poll_interval)
                self.schedule_wake.clear()

    def _schedule_once(self, now) -> bool:
        """Claim and dial one batch of due members; True when more may be due."""
        batch = self.config.dialer_claim_batch
        members = self.store.due_members(now, batch)
        if not members:
            return False
        items, parsed = [], {}
        for member, score in members:
            claim_id = str(uuidlib.uuid4())
            try:
                scheduled = model.parse_scheduled(member)
            except model.ModelError as exc:
                self._reject_scheduled(member, score, claim_id, "", str(exc), now)
                continue
            config = self.schedule_configs.get(scheduled.config)
            if config is None:
                error = self.schedule_config_errors.get(scheduled.config)
                reason = ("schedule config %r is invalid: %s" % (scheduled.config, error) if error
                          else "schedule config %r does not exist in %s" % (scheduled.config,
                                                                              self.keys.schedule_configs))
                self._reject_scheduled(member, score, claim_id, scheduled.config, reason, now)
                continue
            items.append((member, claim_id, scheduled.expires, config.name, self._candidates(config)))
            parsed[claim_id] = (scheduled, score, config)
        replies = self.store.claim_scheduled(items, now, self.config.dialer_line_lease_ttl,
                                             self.config.dialer_schedule_retry_delay) if items else []
        claims, commands = [], {}
        for (member, claim_id, _, _, _), (status, line_name, group) in zip(items, replies):
            scheduled, score, config = parsed[claim_id]
            claim = Claim(claim_id=claim_id, task=config.name, queue=self.keys.schedule_numbers, raw=member,
                          entry=scheduled.entry, line=line_name, group=group or 0, claimed_at=now,
                          kind="schedule", score=score, expires=scheduled.expires)
            if status == "ok":
                try:
                    commands[claim_id] = self._command(config, claim, self.lines[line_name])
                except (KeyError, originate.UnsafeValue) as exc:
                    self._reject_claim(claim, str(exc) if not isinstance(exc, KeyError) else "line vanished")
                    continue
                claims.append(claim)
            elif status == "expired":
                log.info("schedule member %s (config %r) expired at %s: not called",
                         scheduled.entry.number, config.name, scheduled.expires)
                self._finish(claim, call.CAUSE_EXPIRED, Verdict.DROPPED, tracked=False)
                self.stats[claim.owner]["expired"] += 1
            elif status == "dropped":
                log.info("schedule member %s (config %r): no line available and %s: dropped",
                         scheduled.entry.number, config.name,
                         "expires is 0" if not scheduled.expires else "expires is too close")
                self._finish(claim, call.CAUSE_NO_LINE, Verdict.DROPPED, tracked=False)
                self.stats[claim.owner]["dropped"] += 1
            elif status == "requeued":
                log.info("schedule member %s (config %r): no line available, written back for %s",
                         scheduled.entry.number, config.name, line_name)
                self.stats[claim.owner]["requeued"] += 1
        self._send(claims, commands)
        return len(members) == batch

    def _reject_scheduled(self, member, score, claim_id, config_name, reason, now):
        if not self.store.take_rejected(member, claim_id, now, reason, config_name):
            return      # another daemon took it first
        claim = Claim(claim_id=claim_id, task=config_name, queue=self.keys.schedule_numbers, raw=member,
                      entry=None, line=None, group=0, claimed_at=now, kind="schedule", score=score)
        self._reject_claim(claim, reason)

    # --- events ----------------------------------------------------------------------

    def _event_loop(self):
        for event in self.events:
            if isinstance(event, JobResult):
                claim = self.by_uuid.get(event.job_uuid)
                if claim is None:
                    continue
                status, value = call.parse_job_body(event.body)
                att = claim.attempt
                att.job_done = True
                att.job_ok = status == "+OK"
                if not att.job_ok:
                    att.job_cause = value
            elif isinstance(event, Answered):
                claim = self.by_uuid.get(event.uuid)
                if claim is None:
                    continue
                claim.attempt.answered_at = event.ts
                log.debug("answered %s uuid=%s", claim.entry.number if claim.entry else "?", event.uuid)
                continue
            elif isinstance(event, HungUp):
                claim = self.by_uuid.get(event.uuid)
                if claim is None:
                    continue
                att = claim.attempt
                att.hangup_cause, att.billsec, att.ended_at = event.cause, event.billsec, event.ts
                if event.answered and att.answered_at is None:
                    att.answered_at = event.ts - event.billsec
            elif isinstance(event, Disconnected):
                continue
            else:
                continue
            if claim.attempt.finished():
                self._attempt_over(claim)

    def _attempt_over(self, claim):
        att = claim.attempt
        verdict = att.verdict()
        cause = att.cause()
        if verdict == Verdict.ROUTE:
            self.by_uuid.pop(att.uuid, None)
            gevent.spawn(self._fail_over, claim, cause)
            return
        if verdict == Verdict.THROTTLE:
            self.by_uuid.pop(att.uuid, None)
            gevent.spawn(self._retry_throttled, claim)
            return
        self.throttle_delay = 0.0
        self._finish(claim, cause, verdict)

    def _finish(self, claim, cause, verdict, tracked=True):
        ts = time.time()
        result = self._result(claim, cause, verdict, ts)
        self._queue_write(claim.claim_id, claim.line, result, None)
        if tracked:
            self._untrack(claim)
        counters = self.stats[claim.owner]
        if verdict == Verdict.ANSWERED:
            counters["answered"] += 1
        else:
            counters["failed"] += 1
            counters["cause:" + cause] += 1
        log.info("call %s task=%s line=%s uuid=%s attempt=%d cause=%s answered=%s billsec=%d",
                 claim.entry.number if claim.entry else "?", claim.task, claim.line,
                 claim.attempt.uuid if claim.attempt else "", claim.attempt_no, cause,
                 verdict == Verdict.ANSWERED, claim.attempt.billsec if claim.attempt else 0)

    def _result(self, claim, cause, verdict, ts):
        att = claim.attempt
        return {
            "ts": ts, "host": self.host, "kind": claim.kind, "queue": claim.queue,
            ("task" if claim.kind == "queue" else "config"): claim.task,
            "number": claim.entry.number if claim.entry else model.raw_repr(claim.raw, 200),
            "line": claim.line or "", "group_index": claim.group,
            "line_group": self._group_name(claim),
            "uuid": att.uuid if att else "", "claim_id": claim.claim_id, "attempt": claim.attempt_no,
            "cause": cause, "verdict": verdict.value, "answered": verdict == Verdict.ANSWERED,
            "billsec": att.billsec if att else 0, "claimed_at": claim.claimed_at,
            "sent_at": att.sent_at if att else "", "answered_at": att.answered_at if att else "",
            "ended_at": (att.ended_at if att and att.ended_at else ts),
            **({"scheduled_at": claim.score, "expires": claim.expires} if claim.kind == "schedule" else {}),
        }

    def _group_name(self, claim):
        task = self._source(claim)
        if task is None or claim.group >= len(task.line_groups):
            return ""
        return task.line_groups[claim.group]

    def _fail_over(self, claim, cause):
        """Route failure on one group: the same number on the next group, once per group."""
        task = self._source(claim)
        old_line = claim.line
        log.info("route failure %s on line %s (task %r, group %d): failing over",
                 cause, old_line, claim.task, claim.group)
        nxt = None
        deadline = time.time() + self.config.dialer_failover_wait
        while task is not None and claim.group + 1 < len(task.line_groups) and not self.stopping.is_set():
            # The next groups may be busy right now: wait for a slot rather
            # than drop a number that never reached its callee.
            candidates = self._candidates(task, claim.group + 1)
            try:
                if claim.line:
                    self.store.release_line(claim.line, claim.claim_id)
                    claim.line = None
                nxt = self.store.reserve_line(claim.claim_id, candidates, time.time(),
                                              self.config.dialer_line_lease_ttl) if candidates else None
            except REDIS_ERRORS as exc:
                log.warning("failover of %s postponed: %s", claim.claim_id, exc)
            if nxt is not None or time.time() >= deadline:
                break
            self.stopping.wait(0.2)
            task = self._source(claim)
        if claim.line is None:
            claim.line = old_line   # where it last failed, for the result record
        if nxt is None:
            # Every remaining group failed or was full: the attempt ends with
            # the route cause; the number is not dialed again.
            self.by_uuid[claim.attempt.uuid] = claim
            self._finish(claim, cause, Verdict.ROUTE)
            return
        line_name, offset = nxt
        claim.line = line_name
        claim.group = claim.group + 1 + offset
        claim.attempt_no += 1
        try:
            cmd = self._command(task, claim, self.lines[line_name])
        except (KeyError, originate.UnsafeValue) as exc:
            self._finish(claim, call.CAUSE_UNKNOWN, Verdict.UNKNOWN)
            log.error("failover of %s impossible: %s", claim.claim_id, exc)
            return
        self.claims.pop(claim.claim_id, None)
        self.active[claim.owner] -= 1
        self._send([claim], {claim.claim_id: cmd})

    def _retry_throttled(self, claim):
        """FreeSWITCH refused for capacity: pause every originate, then resend this one."""
        now = time.time()
        if now >= self.throttle_until:
            # Grow the pause only for refusals after the last pause ended:
            # a burst of refusals from one batch is one throttle, not many.
            self.throttle_delay = min(max(self.throttle_delay * 2, self.config.dialer_throttle_backoff),
                                      self.config.dialer_throttle_backoff_max)
            self.throttle_until = now + self.throttle_delay
            log.warning("FreeSWITCH throttling (DESTINATION_OUT_OF_ORDER without a channel): pausing %.1fs",
                        self.throttle_delay)
        self.stats[claim.owner]["throttled"] += 1
        while time.time() < self.throttle_until and not self.stopping.is_set():
            gevent.sleep(self.throttle_until - time.time())
        task = self._source(claim)
        line = self.lines.get(claim.line)
        if task is None or line is None or self.stopping.is_set():
            # It never rang: back where it came from rather than lost.
            self._requeue_later(claim)
            return
        cmd = self._command(task, claim, line)
        self.claims.pop(claim.claim_id, None)
        self.active[claim.owner] -= 1
        self._send([claim], {claim.claim_id: cmd})

    # --- writes ------------------------------------------------------------------------

    def _queue_write(self, claim_id, line, result, rejected):
        self.pending_writes.append((claim_id, line, result, rejected))
        self.write_wake.set()

    def _writer_loop(self):
        delay = 0.2
        while True:
            self.write_wake.wait(1.0)
            self.write_wake.clear()
            while self.pending_requeues:
                claim_id, rec = self.pending_requeues[0]
                try:
                    self.store.requeue(claim_id, rec)
                except REDIS_ERRORS:
                    gevent.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                self.pending_requeues.pop(0)
            while self.pending_writes:
                batch = self.pending_writes[:500]
                try:
                    self.store.finish(batch)
                except REDIS_ERRORS as exc:
                    log.warning("cannot write %d result(s) yet (%s); keeping them", len(self.pending_writes), exc)
                    gevent.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                delay = 0.2
                del self.pending_writes[:len(batch)]

    # --- housekeeping --------------------------------------------------------------------

    def _on_esl_connect(self):
        self._maybe_ready()
        self._wake_all()
        if self.claims:
            gevent.spawn(self._reconcile)

    def _reconcile(self, older_than=0.0):
        """Ask FreeSWITCH about calls whose events we may have missed."""
        now = time.time()
        for claim in list(self.claims.values()):
            att = claim.attempt
            if att is None or att.sent_at > now - older_than or claim.claim_id not in self.claims:
                continue
            try:
                exists = self._uuid_exists(att.uuid)
            except EslError:
                return
            if exists:
                if not att.job_done:
                    att.job_done, att.job_ok = True, True
                continue
            if claim.claim_id in self.claims and self.by_uuid.get(att.uuid) is claim:
                log.warning("lost track of call uuid=%s (task %r): recorded as UNKNOWN, not redialed",
                            att.uuid, claim.task)
                self._finish(claim, call.CAUSE_UNKNOWN, Verdict.UNKNOWN)

    def _uuid_exists(self, uuid):
        return self.esl.api(originate.build_api("uuid_exists", uuid)).strip() == "true"

    def _housekeeping(self):
        last_reload = time.time()
        last_reconcile = time.time()
        while not self.stopping.wait(2.0):
            now = time.time()
            try:
                if self.redis_ok.is_set():
                    if now - last_reload >= self.config.dialer_reload_interval:
                        last_reload = now
                        self.reload_all()
                    self.store.renew_leases(((c.line, c.claim_id) for c in self.claims.values() if c.line),
                                            now, self.config.dialer_line_lease_ttl)
                    self._write_status(now)
            except REDIS_ERRORS as exc:
                log.warning("housekeeping: Redis unavailable (%s)", exc)
            if self.esl.ready.is_set() and now - last_reconcile >= min(30.0, self.config.dialer_job_timeout):
                last_reconcile = now
                self._reconcile(older_than=self.config.dialer_job_timeout)

    def _write_status(self, now):
        tasks = {}
        dt = datetime.datetime.fromtimestamp(now, self.tz)
        for name in set(self.tasks) | set(self.task_errors):
            state, reason = self.task_state(name, dt)
            task = self.tasks.get(name)
            counters = self.stats.get(name, {})
            tasks[name] = {"state": state, "reason": reason, "active": self.active[name],
                           "limit": task.limit if task else 0, "queue": task.number_queue if task else "",
                           "dialed": counters.get("dialed", 0), "answered": counters.get("answered", 0),
                           "failed": counters.get("failed", 0), "rejected": counters.get("rejected", 0),
                           "updated": now}
        removed = [n for n in self._status_tasks if n not in tasks] if hasattr(self, "_status_tasks") else []
        self._status_tasks = set(tasks)
        self.store.write_status({
            "host": self.host, "pid": os.getpid(), "version": __version__, "started_at": self.started_at,
            "heartbeat": now, "state": "draining" if self.stopping.is_set() else "running",
            "esl": "connected" if self.esl.ready.is_set() else "disconnected",
            "active_calls": len(self.claims), "pending_writes": len(self.pending_writes),
        }, tasks, removed)


def _text(value):
    return value.decode("utf-8", "backslashreplace") if isinstance(value, bytes) else value


def _is_uuid(value):
    try:
        return isinstance(value, str) and str(uuidlib.UUID(value)) == value
    except ValueError:
        return False


def _parse_or_none(raw):
    try:
        return model.parse_number(raw)
    except model.ModelError:
        return None


def _safe_url(url):
    """The Redis URL without its password, for logs."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return "%s://***@%s" % (scheme, rest.rpartition("@")[2])
    return url


def hostname():
    return socket.gethostname()
