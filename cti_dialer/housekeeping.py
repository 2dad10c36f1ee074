"""Housekeeping: heartbeat, line leases, status, and settling what nobody follows.

One ``loop(now)`` every ``HEARTBEAT_INTERVAL``: say this host is alive,
push the leases of its live calls forward, write its status, and now and
then sweep in-flight records stranded by a lost Redis reply, take over the
numbers of hosts whose heartbeat stopped, and ask the switch about calls
whose events may have been missed.
"""
import datetime
import logging
import os
import time

from . import __version__, messages, originate, pacing
from .esl import EslError
from .lifecycle import ClaimState
from .model import as_text
from .runtime import REDIS_ERRORS
from .tracker import STRANDED_AFTER

log = logging.getLogger("cti_dialer")

# How often in-flight records nobody follows are looked for.
SWEEP_INTERVAL = 60.0
# For this long after Redis trouble (a reconnect, a failed claim), records
# still "claimed" and older than QUICK_STRANDED that nobody here holds are put
# back at every heartbeat: a claim whose reply was lost. A live claim is
# "claimed" for milliseconds, and one requeued under a dispatcher's feet is
# refused at mark-sent (its record is gone), so this can never dial twice.
QUICK_SWEEP_FOR = 60.0
QUICK_STRANDED = 5.0
# Housekeeping runs this often; a heartbeat lives for takeover_after but never
# less than three of these, so a live host can never look gone between two.
HEARTBEAT_INTERVAL = 2.0
# Calls silent for this long (or job_timeout, if shorter) are asked about.
RECONCILE_INTERVAL = 30.0
# The switch's sessions-per-second and max-sessions are reread this often
# (an operator may change them live with fsctl), and after every reconnect.
SWITCH_LIMITS_INTERVAL = 60.0


class Housekeeping:
    def __init__(self, *, config, store, catalog, tracker, writer, health, esl, tz, task_faults=None, pacer=None):
        self.config = config
        self.store = store
        self.catalog = catalog
        self.tracker = tracker
        self.writer = writer
        self.health = health
        self.esl = esl
        self.tz = tz
        self.task_faults = task_faults if task_faults is not None else {}   # the dispatcher's, read-only here
        self.pacer = pacer
        self.started_at = time.time()
        self.queue_lengths = {}
        self.line_health = {}          # the domain's line-state hash by line, for metrics
        self._status_tasks = None      # None until the first write reads what an earlier run left
        self._last_sweep = self._last_reconcile = 0.0
        self._limits_read_at = 0.0
        self.switch_limits_stale = True

    def heartbeat_ttl(self):
        return max(self.config.dialer_takeover_after, 3 * HEARTBEAT_INTERVAL)

    # --- component --------------------------------------------------------------

    def initialize(self):
        self._last_sweep = self._last_reconcile = time.time()

    def loop(self, now: float) -> float:
        """Each step on its own: one that fails (a key of the wrong type, a slow
        Redis) is logged and the others still run, so a broken status write can
        never stop the heartbeat or the settling of a dead host's numbers."""
        esl_up = self.esl.ready.is_set()
        if self.health.redis_ok.is_set():
            self._step("heartbeat", self._heartbeat)
            self._step("lease renewal", self.tracker.renew_leases, now)
            self._step("status", self.write_status, now)
            self._step("line health", self.read_line_health)
            if now - self.health.redis_trouble_at < QUICK_SWEEP_FOR:
                self._step("quick sweep", self.sweep_unclaimed_claims)
            if esl_up and now - self._last_sweep >= min(SWEEP_INTERVAL, self.config.dialer_takeover_after):
                self._last_sweep = now
                self._step("sweep", self.sweep_stranded)
                self._step("takeover", self.take_over_gone_hosts)
        if esl_up and now - self._limits_read_at >= SWITCH_LIMITS_INTERVAL:
            self._step("switch limits", self.read_switch_limits, now)
        if esl_up and now - self._last_reconcile >= min(RECONCILE_INTERVAL, self.config.dialer_job_timeout):
            self._last_reconcile = now
            self._step("reconcile", self.tracker.reconcile, self.config.dialer_job_timeout)
        return HEARTBEAT_INTERVAL

    def _step(self, name, fn, *args):
        try:
            fn(*args)
        except (EslError, *REDIS_ERRORS) as exc:
            log.warning("housekeeping, %s: %s", name, exc)

    def _heartbeat(self):
        if not self.store.heartbeat(self.heartbeat_ttl(), 3 * HEARTBEAT_INTERVAL) and not self.health.name_lost:
            log.error("host name %s is now held by another instance: this one stops dialing and exits",
                      self.store.keys.host)
            self.health.name_lost = True
            self.health.stopping.set()

    def sweep_unclaimed_claims(self):
        claimed = {cid: rec for cid, rec in self.store.inflight().items()
                   if rec.get("state") == ClaimState.CLAIMED.value}
        counts = self.tracker.recover(claimed, older_than=QUICK_STRANDED) if claimed else {}
        if counts:
            log.warning("put back claimed numbers whose claim reply was lost: %s", dict(counts))

    def sweep_stranded(self):
        counts = self.tracker.recover(self.store.inflight(), older_than=STRANDED_AFTER)
        if counts:
            log.warning("settled stranded in-flight records: %s", dict(counts))

    def shutdown(self):
        try:
            self.store.write_status({"state": "stopped", "heartbeat": time.time()}, {})
        except REDIS_ERRORS:
            pass

    # --- parts ------------------------------------------------------------------------

    def read_switch_limits(self, now):
        """Pace originates under the switch's own limits (``api status``)."""
        try:
            sps, max_sessions, _ = pacing.parse_switch_limits(self.esl.api(originate.build_api("status")))
        except EslError as exc:
            log.warning("cannot read FreeSWITCH's limits: %s", exc)
            return
        budget = self.tracker.budget
        before = (budget.limit, budget.max_sessions)
        budget.set_limits(sps, max_sessions)
        self._limits_read_at, self.switch_limits_stale = now, False
        if (budget.limit, budget.max_sessions) != before:
            log.info("FreeSWITCH allows %s session(s) per second and %s at once: originates paced at %s/s",
                     sps if sps else "unlimited", max_sessions or "unlimited",
                     "%.1f" % budget.limit if budget.limit else "no limit")

    def _paced_status(self, task, now):
        """The agent-pacing fields of a task's status (defaults when it is not paced)."""
        pacer = self.pacer
        if task is None or task.pacing is None or pacer is None:
            return {}
        report = pacer.report(task, now)
        return dict(report, abandon_rate=round(report["abandon_rate"], 4), pacing_risk=round(report["pacing_risk"], 5))

    def read_line_health(self):
        """Outages and failure counts of the domain's lines, as every host sees them (for metrics)."""
        if any(line.fault_threshold for line in self.catalog.lines.values()):
            self.line_health = self.store.line_health()
        else:
            self.line_health = {}

    def take_over_gone_hosts(self):
        """Settle the in-flight numbers of hosts whose heartbeat stopped ``takeover_after`` ago."""
        for host in self.store.gone_hosts():
            moved = self.store.take_over(host)
            if not moved:
                continue
            counts = self.tracker.recover({cid: rec for cid, rec in self.store.inflight().items() if cid in moved})
            log.warning("host %s has no heartbeat for %ss: took over %d in-flight number(s): %s",
                        host, int(self.heartbeat_ttl()), len(moved), dict(counts))

    def write_status(self, now):
        """This host's heartbeat and, per task, its state and what is waiting for it."""
        catalog, tracker = self.catalog, self.tracker
        dt = datetime.datetime.fromtimestamp(now, self.tz)
        names = sorted(set(catalog.tasks) | set(catalog.task_errors))
        sizes = self.store.queue_sizes([(name, catalog.tasks[name].number_queue if name in catalog.tasks else None)
                                        for name in names])
        self.queue_lengths = {name: sizes[name][0] for name in names if name in catalog.tasks}
        tasks = {}
        for name in names:
            state, reason = catalog.task_state(name, dt)
            if name in self.task_faults and state != "error":
                state, reason = "error", self.task_faults[name]
            task = catalog.tasks.get(name)
            counters = tracker.stats.get(name, {})
            queued, redials = sizes[name]
            paced = self._paced_status(task, now)
            tasks[name] = messages.encode_task_status(messages.TaskStatus(
                state=state, reason=reason, active=tracker.active[name],
                limit=task.limit if task else 0, queue=task.number_queue if task else "",
                queued=queued if task else 0, redials_pending=redials,
                dialed=counters.get("dialed", 0), answered=counters.get("answered", 0),
                failed=counters.get("failed", 0), rejected=counters.get("rejected", 0),
                last_error=catalog.task_errors.get(name) or tracker.last_error.get(name, ""),
                counters=self.store.keys.counters(name), updated=now, machine=counters.get("machine", 0),
                **paced))
        if self._status_tasks is None:
            self._status_tasks = {as_text(n) for n in self.store.status_task_names()}
        removed = [n for n in self._status_tasks if n not in tasks]
        self._status_tasks = set(tasks)
        self.store.write_status(messages.encode_host_status(messages.HostStatus(
            host=self.store.keys.host, pid=os.getpid(), version=__version__,
            started_at=self.started_at, heartbeat=now,
            state="draining" if self.health.stopping.is_set() else "running",
            esl=("refusing originates: " + self.health.switch_fault if self.health.switch_fault
                 else "connected" if self.esl.ready.is_set() else "disconnected"),
            active_calls=len(tracker.claims), pending_writes=len(self.writer.results),
            tracked_claims=len(tracker.claims), tracked_uuids=len(tracker.by_uuid),
            rss_kb=rss_kb())), tasks, removed)


def rss_kb():
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return 0
