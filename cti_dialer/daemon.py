"""The daemon: configuration, what to claim and when, and the loops that run it.

Greenlets:
- one ``_task_loop`` per task: claims numbers (each with a line slot) while
  the task is enabled, inside its window and under its limit;
- ``_schedule_loop``: claims due members of the schedule set;
- ``Calls.event_loop`` and ``Calls.writer_loop`` (calls.py): follow calls,
  write results;
- ``_watch_config``: pub/sub config_change plus a full reread after every
  (re)subscribe; ``_housekeeping``: periodic reread, lease renewal, job
  timeouts, sweeping stranded claims, status.
Signal handlers only set ``stopping``.
"""
import datetime
import logging
import os
import signal
import time
import uuid as uuidlib
from typing import Dict, List

import gevent
import gevent.event
import orjson
import redis

from . import __version__, call, keys as keymod, model, originate, settings, timewindow
from .call import Verdict
from .calls import REDIS_ERRORS, SCHEDULE_PREFIX, STRANDED_AFTER, Calls, Claim, redial_state
from .esl import EslClient, EslError
from .metrics import make_registry, serve
from .sdnotify import Notifier
from . import store as store_module
from .model import as_text
from .store import Candidates, Store

log = logging.getLogger("cti_dialer")

# How often in-flight records nobody follows are looked for (a lost Redis
# reply can leave one behind while the daemon runs).
SWEEP_INTERVAL = 60.0
# An idle task also looks at its queue by itself this often, in case a wake
# was missed (the watcher lost Redis for a moment, for example).
IDLE_SAFETY_NET = 30.0
# Housekeeping (heartbeat, leases, status) runs this often; a heartbeat lives
# for takeover_after but never less than three of these, so a live host can
# never look gone between two heartbeats.
HEARTBEAT_INTERVAL = 2.0


class Daemon:
    def __init__(self, config, redis_client=None, config_path=None, on_reload=None):
        self.config = config
        self.config_path = config_path
        self.on_reload = on_reload          # re-applies logging settings after SIGHUP
        self.host = config.dialer_host
        self.domain = config.dialer_domain
        self.tz = config.dialer_timezone
        self.keys = keymod.Keys(self.host, self.domain)
        self.redis = redis_client or store_module.connect(config)
        self.store = Store(self.redis, self.keys, result_maxlen=config.dialer_result_maxlen,
                           rejected_maxlen=config.dialer_rejected_maxlen)
        self.stopping = gevent.event.Event()
        self.esl = EslClient(config.esl_host, config.esl_port, config.esl_password,
                             connect_timeout=config.esl_connect_timeout,
                             command_timeout=config.esl_command_timeout,
                             reconnect_max=config.esl_reconnect_max, keepalive=config.esl_keepalive,
                             on_event=self._on_esl_event, on_connect=self._on_esl_connect)
        self.registry, latency = make_registry(self)
        self.calls = Calls(config=config, host=self.host, store=self.store, esl=self.esl, stopping=self.stopping,
                           source_of=self._source, line_of=self.lines_get, candidates=self._candidates,
                           on_freed=self._on_slot_freed, latency=latency)
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
        self._reported = {}
        # dispatch
        self.runners: Dict[str, gevent.Greenlet] = {}
        self.wake: Dict[str, gevent.event.Event] = {}
        self.line_starved = set()
        self.idle: Dict[str, str] = {}        # task -> queue of tasks whose last claim found nothing
        self.idle_wake = gevent.event.Event()
        self.idle_version = 0                 # bumped on every change of ``idle``
        self.watchers: Dict[str, gevent.Greenlet] = {}   # task -> greenlet blocked on its queue
        # Blocked calls hold their connection for seconds: a pool of their own.
        self.watch_store = self.store if redis_client is not None else Store(
            store_module.connect(config, config.dialer_idle_watchers + 1), self.keys)
        self.blocking_ok = True               # False once the server refused BLMOVE (Redis < 6.2)
        self.schedule_wake = gevent.event.Event()
        self.started_at = time.time()
        self.redis_connects = 0
        self.queue_lengths: Dict[str, int] = {}
        self.notifier = Notifier()
        self.reload_requested = gevent.event.Event()
        self.metrics_server = None
        self._greenlets: List[gevent.Greenlet] = []
        self._status_tasks = set()
        self._ready_logged = False

    def lines_get(self, name):
        return self.lines.get(name) if name else None

    # --- lifecycle -----------------------------------------------------------------

    def run(self):
        """Run until SIGTERM/SIGINT (or ``stop()``); returns the exit status."""
        gevent.signal_handler(signal.SIGTERM, self.stopping.set)
        gevent.signal_handler(signal.SIGINT, self.stopping.set)
        gevent.signal_handler(signal.SIGHUP, self.reload_requested.set)
        self.start()
        self.stopping.wait()
        self.shutdown()
        return 0

    def start(self):
        redis_at = _safe_url(self.config.redis_url) if not self.config.redis_sentinels else "sentinel %s at %s" % (
            self.config.redis_sentinel_service, ",".join("%s:%d" % hp for hp in self.config.redis_sentinels))
        log.info("cti-dialer %s starting: host=%s domain=%s redis=%s esl=%s:%s",
                 __version__, self.host, self.domain, redis_at, self.config.esl_host, self.config.esl_port)
        if self.config.metrics_listen:
            self.metrics_server = serve(self.registry, self.config.metrics_listen)
        self.esl.start()
        for fn in (self._watch_config, self.calls.event_loop, self.calls.writer_loop, self._housekeeping,
                   self._recover_then_dispatch, self._systemd_loop, self._reload_loop, self._watch_idle):
            self._greenlets.append(gevent.spawn(self._supervise, fn))
        self._schedule_greenlet = gevent.spawn(self._supervise, self._schedule_loop)

    def stop(self):
        self.stopping.set()

    def shutdown(self):
        """No new claims; let dispatch steps in progress end; write what is pending; exit."""
        log.info("stopping: no new claims; %d call(s) stay up on the switch and are followed after restart",
                 len(self.calls.claims))
        self.notifier.stopping()
        deadline = time.time() + self.config.dialer_drain_timeout
        # Loops end on their own at their next look at ``stopping``: killing
        # one between "mark sent" and the originate would record UNKNOWN for a
        # number that was never dialed.
        for event in list(self.wake.values()) + [self.schedule_wake]:
            event.set()
        dispatchers = list(self.runners.values()) + [self._schedule_greenlet]
        gevent.joinall(dispatchers, timeout=max(0.5, deadline - time.time()))
        for g in dispatchers:
            g.kill(block=False)
        for g in list(self.calls._helpers):
            g.join(timeout=max(0.1, deadline - time.time()))
        if not self.calls.drain(deadline):
            log.error("%d result(s) and %d requeue(s) not written to Redis before exit; their numbers stay "
                      "in-flight and are settled at the next start",
                      len(self.calls.pending_writes), len(self.calls.pending_requeues))
        try:
            self.store.write_status({"state": "stopped", "heartbeat": time.time()}, {})
        except REDIS_ERRORS:
            pass
        for g in self._greenlets:
            g.kill(block=False)
        if self.metrics_server is not None:
            self.metrics_server.stop(timeout=1)
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
                log.exception("%s failed; restarting it in 1s", getattr(fn, "__name__", fn))
                self.stopping.wait(1)

    def _maybe_ready(self):
        if not self._ready_logged and self.redis_ok.is_set() and self.esl.ready.is_set() \
                and self.config_loaded.is_set():
            self._ready_logged = True
            log.info("ready: connected to Redis, subscribed to %s and %s, logged in to ESL",
                     self.keys.channel_all, self.keys.channel_host)
            self.notifier.ready(self.summary())

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

    def _parse(self, parse, *args):
        """Run a model parser; any failure, even an unexpected one, is a ModelError."""
        try:
            return parse(*args)
        except model.ModelError:
            raise
        except Exception as exc:
            log.exception("unexpected error reading %r", args[0])
            raise model.ModelError("cannot be read: %s: %s" % (type(exc).__name__, exc)) from None

    def _set_task(self, name, template_raw, host_raw):
        name = as_text(name)
        try:
            task = self._parse(model.merge_task, name, template_raw, host_raw, self.tz)
        except model.ModelError as exc:
            self.task_errors[name] = str(exc)
            self.tasks.pop(name, None)
            source = self.keys.task_host if host_raw is not None else self.keys.task_template
            self._report("task", name, source, host_raw if host_raw is not None else template_raw, str(exc))
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

    def _set_entry(self, kind, table, errors, key, parse, name, raw):
        """Replace one parsed line, group or schedule config; a bad one is dropped and reported."""
        name = as_text(name)
        if raw is None:
            table.pop(name, None)
            errors.pop(name, None)
            self._clear_report(kind, name)
            return
        try:
            table[name] = self._parse(parse, name, raw)
            errors.pop(name, None)
            self._clear_report(kind, name)
        except model.ModelError as exc:
            table.pop(name, None)
            errors[name] = str(exc)
            self._report(kind, name, key, raw, str(exc))

    def _set_line(self, name, raw):
        self._set_entry("line", self.lines, {}, self.keys.lines, model.parse_line, name, raw)

    def _set_group(self, name, raw):
        self._set_entry("group", self.groups, {}, self.keys.groups, model.parse_group, name, raw)

    def _set_schedule_config(self, name, raw):
        self._set_entry("schedule_config", self.schedule_configs, self.schedule_config_errors,
                        self.keys.schedule_configs, model.parse_schedule_config, name, raw)
        self.schedule_wake.set()

    def reload_all(self):
        """Reread every task, line, group and schedule config (after a reconnect and on a timer)."""
        template, host = self.store.read_tasks()
        tables = ((self.store.read_lines(), self.lines, self._set_line),
                  (self.store.read_groups(), self.groups, self._set_group),
                  (self.store.read_schedule_configs(), self.schedule_configs, self._set_schedule_config))
        for raw_table, known, setter in tables:
            names = {as_text(n) for n in raw_table}
            stale = set(known) | (set(self.schedule_config_errors) if known is self.schedule_configs else set())
            for name in stale - names:
                setter(name, None)
            for name, raw in raw_table.items():
                setter(name, raw)
        names = {as_text(n) for n in template} | {as_text(n) for n in host}
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
        readers = {
            keymod.LINE_TABLE: (self.store.read_line, self._set_line),
            keymod.GROUP_TABLE: (self.store.read_group, self._set_group),
            keymod.SCHEDULE_CONFIG_TABLE: (self.store.read_schedule_config, self._set_schedule_config),
        }
        if table not in readers and table != keymod.TASK_TABLE:
            self._report_message(channel, data, "unknown table %r" % (table,))
            return
        if key is None:
            self.reload_all()
        elif table == keymod.TASK_TABLE:
            self._set_task(key, *self.store.read_task(key))
            self._wake(key)
        else:
            read, setter = readers[table]
            setter(key, read(key))
            self._wake_all()
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
                self.redis_connects += 1
                if not self.redis_ok.is_set():
                    log.info("Redis connected")
                self.store.heartbeat(self._heartbeat_ttl())
                self.redis_ok.set()
                self.calls.write_wake.set()
                self._maybe_ready()
                delay = 0.5
                while not self.stopping.is_set():
                    msg = pubsub.get_message(timeout=1.0)
                    if msg and msg.get("type") == "message":
                        self.apply_change(as_text(msg["channel"]), msg["data"])
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

    def _source(self, claim):
        """The task or schedule config a claim dials for (None once deleted or broken)."""
        if claim.kind == "schedule":
            return self.schedule_configs.get(claim.task)
        return self.tasks.get(claim.task)

    def _candidates(self, source, start_group=0) -> Candidates:
        groups = []
        for gname in source.line_groups[start_group:]:
            group = self.groups.get(gname)
            lines = []
            if group is not None:
                for lname in group.lines:
                    line = self.lines.get(lname)
                    if line is not None and line.enable and line.limit > 0:
                        lines.append((lname, line.limit))
            groups.append(lines)
        # Groups keep their positions (empty ones included) so the group
        # index the scripts return is the source's group index.
        return Candidates(groups)

    def _wake(self, name):
        event = self.wake.get(name)
        if event is not None:
            event.set()

    def _wake_all(self):
        for event in self.wake.values():
            event.set()
        self.schedule_wake.set()

    def _on_slot_freed(self, owner):
        self._wake(owner)
        if self.line_starved:
            starved, self.line_starved = self.line_starved, set()
            for name in starved:
                self._wake(name)
        if owner.startswith(SCHEDULE_PREFIX):
            self.schedule_wake.set()

    def _ensure_runner(self, name):
        runner = self.runners.get(name)
        if runner is None or runner.dead:
            if name in self.tasks and self.recovered.is_set() and not self.stopping.is_set():
                self.wake[name] = gevent.event.Event()
                def task_loop():
                    self._task_loop(name)
                task_loop.__name__ = "task loop %r" % name
                self.runners[name] = gevent.spawn(self._supervise, task_loop)
        else:
            self._wake(name)

    def _recover_then_dispatch(self):
        """Settle this host's in-flight numbers once, then start the task loops."""
        while not self.stopping.is_set():
            self.esl.ready.wait(1)
            self.redis_ok.wait(1)
            if not (self.esl.ready.is_set() and self.redis_ok.is_set()):
                continue
            try:
                counts = self.calls.recover(self.store.inflight())
                if counts:
                    log.info("recovered in-flight numbers: %d requeued (never dialed), %d still up and followed, "
                             "%d ended while we were away (recorded as UNKNOWN), %d decided results written",
                             counts["requeued"], counts["followed"], counts["unknown"], counts["settled"])
                break
            except (EslError, *REDIS_ERRORS) as exc:
                log.warning("recovery postponed: %s", exc)
                self.stopping.wait(1)
        self.recovered.set()
        for name in list(self.tasks):
            self._ensure_runner(name)

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
                self._not_idle(name)
                return
            wait = self._dispatch_once(task)
            if wait:
                wake.wait(wait)
                wake.clear()
            self._not_idle(name)

    def _not_idle(self, name):
        if self.idle.pop(name, None) is not None:
            self.idle_version += 1

    def _watch_queue(self, name, queue):
        """Block on an idle task's queue (one connection each, up to ``idle_watchers``)."""
        watcher = self.watchers.get(name)
        if watcher is not None and not watcher.dead:
            return
        if not self.blocking_ok or len(self.watchers) >= self.config.dialer_idle_watchers:
            return
        self.watchers[name] = gevent.spawn(self._queue_watcher, name, queue)

    def _queue_watcher(self, name, queue):
        # Below redis-py's socket timeout, so a quiet queue never looks like a dead server.
        timeout = max(0.1, min(4.0, self.config.redis_socket_timeout - 1.0))
        try:
            while self.idle.get(name) == queue and not self.stopping.is_set():
                try:
                    arrived = self.watch_store.wait_for_number(queue, timeout)
                except redis.ResponseError as exc:
                    log.info("Redis refused BLMOVE (%s): idle queues are polled instead", exc)
                    self.blocking_ok = False
                    return
                except REDIS_ERRORS:
                    return          # the poll in _watch_idle covers the task meanwhile
                if arrived and self.idle.get(name) == queue:
                    self._not_idle(name)
                    self._wake(name)
                    return
        finally:
            if self.watchers.get(name) is gevent.getcurrent():
                del self.watchers[name]

    def _watch_idle(self):
        """Every idle_poll_interval, one script call tells which idle tasks have work.

        This loop runs a hundred times a second, so it is kept lean: a plain
        sleep (cheaper than a timed Event.wait) and the idle list rebuilt
        only when it changed.
        """
        idle, version = [], -1
        while not self.stopping.is_set():
            if not self.idle:
                self.idle_wake.clear()
                self.idle_wake.wait(1.0)         # nothing idle: no polling at all
                continue
            # Tasks with a watcher only need this look for their redials and
            # as a safety net: once a second. Others need it at full speed.
            watched = all(name in self.watchers for name in self.idle)
            gevent.sleep(1.0 if watched else self.config.dialer_idle_poll_interval)
            if not self.idle or not self.redis_ok.is_set():
                continue
            if version != self.idle_version:
                idle, version = list(self.idle.items()), self.idle_version
            try:
                ready = self.store.tasks_with_work(idle)
            except REDIS_ERRORS as exc:
                log.debug("idle watch: %s", exc)
                continue
            for index in ready:
                name = idle[index][0]
                self._not_idle(name)
                self._wake(name)

    def _dispatch_once(self, task) -> float:
        """Start what may be started now; return how long to wait before the next look."""
        if not (self.esl.ready.is_set() and self.redis_ok.is_set()):
            return 0.5
        now = time.time()
        throttled = self.calls.throttled_for(now)
        if throttled:
            return throttled
        state, _ = self.task_state(task.name)
        if state != "running":
            return 1.0
        free = task.limit - self.calls.active[task.name]
        if free <= 0:
            return 1.0      # woken sooner when one of its calls ends
        ids = [str(uuidlib.uuid4()) for _ in range(min(free, self.config.dialer_claim_batch))]
        try:
            status, items = self.store.claim_numbers(task.number_queue, task.name, self._candidates(task), ids,
                                                     now, self.config.dialer_line_lease_ttl)
        except REDIS_ERRORS as exc:
            log.warning("claim for task %r failed: %s", task.name, exc)
            return 1.0
        if items:
            claims = []
            for cid, raw, line, group, origin in items:
                claim = Claim(claim_id=cid, task=task.name, queue=task.number_queue, raw=raw, entry=None,
                              line=line, group=group, claimed_at=now)
                if origin == "zset":
                    # A due redial: it goes back to the redial set if it cannot be sent.
                    claim.queue, claim.back, claim.back_raw, claim.score = \
                        self.keys.retries(task.name), "zset", raw, now
                    try:
                        claim.raw, claim.attempt_no, claim.done = redial_state("queue", "zset", raw)
                    except model.ModelError as exc:
                        self.calls.reject(claim, str(exc))
                        continue
                claims.append(claim)
            self._originate(task, claims, lambda claim: model.parse_number(claim.raw))
        if status == "no_line":
            self.line_starved.add(task.name)
            return 1.0
        if status == "empty":
            # Nothing to claim: _watch_idle looks at every idle task's queue in
            # one round trip and wakes this loop when a number arrives.
            self.idle[task.name] = task.number_queue
            self.idle_version += 1
            self._watch_queue(task.name, task.number_queue)
            self.idle_wake.set()
            return IDLE_SAFETY_NET
        return 0

    def _originate(self, source, claims, parse_entry):
        """Build and send the originates of fresh claims; bad ones are rejected, orphans requeued."""
        ready, commands = [], {}
        for claim in claims:
            try:
                if claim.entry is None:
                    claim.entry = parse_entry(claim)
                line = self.lines.get(claim.line)
                if line is None:
                    # The line went away between claim and send: nothing is
                    # wrong with the number, so it goes back.
                    claim.attempt = None
                    self.calls.requeue(claim, tracked=False)
                    continue
                commands[claim.claim_id] = self.calls.command(source, claim, line)
            except (model.ModelError, originate.UnsafeValue) as exc:
                self.calls.reject(claim, str(exc))
                continue
            ready.append(claim)
        self.calls.send(ready, commands)

    # --- scheduled calls -------------------------------------------------------------

    def _schedule_loop(self):
        """Dial due members of the schedule set; poll cost is O(log N) in the set's size."""
        self.recovered.wait()
        while not self.stopping.is_set():
            more = False
            if self.esl.ready.is_set() and self.redis_ok.is_set() and not self.calls.throttled_for(time.time()):
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
        by_config = {}
        for (member, claim_id, _, _, _), (status, line_name, group) in zip(items, replies):
            scheduled, score, config = parsed[claim_id]
            claim = Claim(claim_id=claim_id, task=config.name, queue=self.keys.schedule_numbers, raw=member,
                          entry=scheduled.entry, line=line_name if status == "ok" else None, group=group or 0,
                          claimed_at=now, kind="schedule", score=score, expires=scheduled.expires, back="zset")
            _, claim.attempt_no, claim.done = redial_state("schedule", "zset", member)
            if status == "ok":
                by_config.setdefault(config.name, (config, []))[1].append(claim)
            elif status == "expired":
                log.info("schedule member %s (config %r) expired at %s: not called",
                         scheduled.entry.number, config.name, scheduled.expires)
                self.calls.finish(claim, call.CAUSE_EXPIRED, Verdict.DROPPED, tracked=False)
            elif status == "dropped":
                log.info("schedule member %s (config %r): no line available and %s: dropped",
                         scheduled.entry.number, config.name,
                         "expires is 0" if not scheduled.expires else "expires is too close")
                self.calls.finish(claim, call.CAUSE_NO_LINE, Verdict.DROPPED, tracked=False)
            elif status == "requeued":
                log.info("schedule member %s (config %r): no line available, written back for %s",
                         scheduled.entry.number, config.name,
                         datetime.datetime.fromtimestamp(line_name, self.tz).isoformat(timespec="seconds"))
                self.calls.stats[claim.owner]["requeued"] += 1
        for config, claims in by_config.values():
            self._originate(config, claims, None)
        return len(members) == batch

    def _reject_scheduled(self, member, score, claim_id, config_name, reason, now):
        if not self.store.take_rejected(member, claim_id, now, reason, config_name):
            return      # another daemon took it first
        claim = Claim(claim_id=claim_id, task=config_name, queue=self.keys.schedule_numbers, raw=member,
                      entry=None, line=None, group=0, claimed_at=now, kind="schedule", score=score, back="zset")
        self.calls.reject(claim, reason)

    # --- systemd and SIGHUP ------------------------------------------------------------------

    def summary(self):
        """One line for systemd's STATUS= (shown by systemctl status)."""
        running = sum(1 for name in self.tasks if self.task_state(name)[0] == "running")
        return "%d call(s) up, %d/%d task(s) running, ESL %s, Redis %s%s" % (
            len(self.calls.claims), running, len(self.tasks) + len(self.task_errors),
            "up" if self.esl.ready.is_set() else "DOWN", "up" if self.redis_ok.is_set() else "DOWN",
            ", %d result(s) waiting for Redis" % len(self.calls.pending_writes) if self.calls.pending_writes else "")

    def _systemd_loop(self):
        """WATCHDOG=1 from the hub: if any greenlet hogs it, the keep-alives stop and systemd restarts us."""
        if not self.notifier:
            return
        interval = min(self.notifier.watchdog_interval or 5.0, 5.0)
        while not self.stopping.wait(interval):
            if self.notifier.watchdog_interval:
                self.notifier.watchdog()
            self.notifier.status(self.summary())

    def _reload_loop(self):
        """SIGHUP: reread the config file's reloadable keys (the handler only sets an event)."""
        while not self.stopping.is_set():
            self.reload_requested.wait()
            self.reload_requested.clear()
            if self.stopping.is_set():
                return
            self.notifier.reloading()
            try:
                new = settings.load(self.config_path)
            except settings.SettingsError as exc:
                log.error("reload refused, keeping the running settings: %s", exc)
                self.notifier.ready(self.summary())
                continue
            changed, restart = self.config.update_reloadable(new)
            self.esl.apply_settings(self.config)
            self.store.result_maxlen = self.config.dialer_result_maxlen
            self.store.rejected_maxlen = self.config.dialer_rejected_maxlen
            if self.on_reload is not None:
                self.on_reload(self.config)
            log.info("reloaded %s: changed %s%s", self.config_path or "defaults", ", ".join(changed) or "nothing",
                     "; needing a restart (ignored): %s" % ", ".join(restart) if restart else "")
            self._wake_all()
            self.notifier.ready(self.summary())

    # --- events and housekeeping ---------------------------------------------------------

    def _on_esl_event(self, event):
        self.calls.events.put_nowait(event)

    def _on_esl_connect(self):
        self._maybe_ready()
        self._wake_all()
        if self.calls.claims:
            gevent.spawn(self.calls.reconcile)

    def _heartbeat_ttl(self):
        return max(self.config.dialer_takeover_after, 3 * HEARTBEAT_INTERVAL)

    def _take_over_gone_hosts(self):
        """Settle the in-flight numbers of hosts whose heartbeat stopped ``takeover_after`` ago."""
        for host in self.store.gone_hosts():
            moved = self.store.take_over(host)
            if not moved:
                continue
            counts = self.calls.recover({cid: rec for cid, rec in self.store.inflight().items() if cid in moved})
            log.warning("host %s has no heartbeat for %ss: took over %d in-flight number(s): %s",
                        host, int(self._heartbeat_ttl()), len(moved), dict(counts))

    def _housekeeping(self):
        last_reload = last_reconcile = last_sweep = time.time()
        while not self.stopping.wait(HEARTBEAT_INTERVAL):
            now = time.time()
            try:
                if self.redis_ok.is_set():
                    self.store.heartbeat(self._heartbeat_ttl())
                    if now - last_reload >= self.config.dialer_reload_interval:
                        last_reload = now
                        self.reload_all()
                    self.calls.renew_leases(now)
                    self._write_status(now)
                    if now - last_sweep >= min(SWEEP_INTERVAL, self.config.dialer_takeover_after) \
                            and self.esl.ready.is_set():
                        last_sweep = now
                        counts = self.calls.recover(self.store.inflight(), older_than=STRANDED_AFTER)
                        if counts:
                            log.warning("settled stranded in-flight records: %s", dict(counts))
                        self._take_over_gone_hosts()
            except (EslError, *REDIS_ERRORS) as exc:
                log.warning("housekeeping: %s", exc)
            if self.esl.ready.is_set() and now - last_reconcile >= min(30.0, self.config.dialer_job_timeout):
                last_reconcile = now
                self.calls.reconcile(older_than=self.config.dialer_job_timeout)

    def _write_status(self, now):
        """This host's heartbeat and, per task, its state and what is waiting for it."""
        dt = datetime.datetime.fromtimestamp(now, self.tz)
        names = sorted(set(self.tasks) | set(self.task_errors))
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            task = self.tasks.get(name)
            pipe.llen(task.number_queue if task else self.keys.retries(name))
            pipe.zcard(self.keys.retries(name))
        sizes = pipe.execute() if names else []
        self.queue_lengths = {name: sizes[2 * i] for i, name in enumerate(names) if name in self.tasks}
        tasks = {}
        for i, name in enumerate(names):
            state, reason = self.task_state(name, dt)
            task = self.tasks.get(name)
            counters = self.calls.stats.get(name, {})
            tasks[name] = {
                "state": state, "reason": reason, "active": self.calls.active[name],
                "limit": task.limit if task else 0, "queue": task.number_queue if task else "",
                "queued": sizes[2 * i] if task else 0, "redials_pending": sizes[2 * i + 1],
                "dialed": counters.get("dialed", 0), "answered": counters.get("answered", 0),
                "failed": counters.get("failed", 0), "rejected": counters.get("rejected", 0),
                "last_error": self.task_errors.get(name) or self.calls.last_error.get(name, ""),
                "counters": self.keys.counters(name), "updated": now}
        removed = [n for n in self._status_tasks if n not in tasks]
        self._status_tasks = set(tasks)
        self.store.write_status({
            "host": self.host, "pid": os.getpid(), "version": __version__, "started_at": self.started_at,
            "heartbeat": now, "state": "draining" if self.stopping.is_set() else "running",
            "esl": "connected" if self.esl.ready.is_set() else "disconnected",
            "active_calls": len(self.calls.claims), "pending_writes": len(self.calls.pending_writes),
            # per-call state still held in memory (both 0 when idle: nothing leaks)
            "tracked_claims": len(self.calls.claims), "tracked_uuids": len(self.calls.by_uuid),
            "rss_kb": _rss_kb(),
        }, tasks, removed)


def _rss_kb():
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return 0


def _safe_url(url):
    """The Redis URL without its password, for logs."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return "%s://***@%s" % (scheme, rest.rpartition("@")[2])
    return url
