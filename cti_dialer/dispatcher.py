"""The queue dispatcher: claims numbers of every task when it may, and watches idle queues.

One ``loop(now)`` is one pass: it looks at the tasks that were woken (a
config change, a call ending, a number arriving) or whose next look is due,
asks ``pacing.plan`` how many calls each may start, claims that many numbers
(each with its line slot, atomically in Redis) and hands them to the call
tracker. A task whose queue is empty is *idle*: a blocking ``BLMOVE q q``
watcher per idle queue (order-preserving, one connection each, up to
``idle_watchers``) wakes it when a number arrives, and one batched look
(``Store.tasks_with_work``) covers redials coming due and any idle task
without a watcher.
"""
import collections
import datetime
import logging
import uuid as uuidlib
from typing import Dict

import gevent
import redis

from . import model, pacing, scripts
from .claim import Claim, HomeType, Kind, redial_state
from .runtime import REDIS_ERRORS

log = logging.getLogger("cti_dialer")

# Idle tasks that all have a queue watcher need the batched look only for
# their redials and as a safety net.
WATCHED_IDLE_POLL = 1.0
# A task whose keys Redis refuses (a queue that is not a list) looks again
# this often; the other tasks are not held up by it.
FAULT_RETRY = 30.0
# Seconds one idle queue's BLMOVE blocks before it is made again, with the
# daemon's own watch pool: each re-arm is a round trip per idle task, and
# the once-a-second batched look covers the task if a watcher is lost.
WATCH_BLOCK = 20.0

# A paced task with no room for its agents looks again this soon even if no
# agent event woke it (a missed event costs at most this).
PACED_LOOK = 0.25


class QueueDispatcher:
    def __init__(self, *, config, catalog, tracker, store, watch_store, health, wakeups, tz, pacer=None,
                 watch_block=None):
        self.config = config
        # How long one BLMOVE blocks: below the watch pool's read timeout, so
        # a quiet queue never looks like a dead server. Shorter on a shared
        # pool (tests), whose read timeout is socket_timeout.
        self.watch_block = watch_block or max(0.1, min(4.0, config.redis_socket_timeout - 1.0))
        self.pacer = pacer                      # agent-aware pacing of tasks with a pacing param
        self.catalog = catalog
        self.tracker = tracker
        self.store = store
        self.watch_store = watch_store          # blocked BLMOVEs hold their connection: a pool of their own
        self.health = health
        self.wakeups = wakeups
        self.tz = tz
        self.next_look: Dict[str, float] = {}
        self.idle: Dict[str, str] = {}          # task -> queue, for tasks whose last claim found nothing
        self.watchers: Dict[str, gevent.Greenlet] = {}
        self.blocking_ok = True                 # False once the server refused BLMOVE (Redis < 6.2)
        self._next_idle_poll = 0.0
        self._next_full_look = 0.0
        self._turns = collections.OrderedDict()  # task names, least recently served first
        # Tasks Redis refuses to serve (a key of the wrong type): name -> reason.
        # Shown as state "error" in status; cleared by the next good claim.
        self.task_faults: Dict[str, str] = {}

    # --- component --------------------------------------------------------------

    def initialize(self):
        pass

    def loop(self, now: float) -> float:
        """One pass over the tasks that are due; returns the seconds until the next is."""
        every, woken = self.wakeups.take_tasks()
        tasks = self.catalog.tasks
        for name in [n for n in self.next_look if n not in tasks]:
            # Deleted or broken: stop claiming; calls already up finish on their own.
            del self.next_look[name]
            self.idle.pop(name, None)
        if self.idle and now >= self._next_idle_poll and self.health.redis_ok.is_set():
            woken |= self._look_at_idle_queues(now)
        # Tasks are looked at least recently served first: when the switch's
        # budget is short, every task gets its turn at the next originate.
        if len(self._turns) != len(tasks) or any(n not in tasks for n in self._turns):
            for name in [n for n in self._turns if n not in tasks]:
                del self._turns[name]
            for name in tasks:
                self._turns.setdefault(name, None)
        for name in list(self._turns):
            task = tasks.get(name)      # a config change during this pass may have removed it
            if task is None:
                continue
            if every or name in woken or self.next_look.get(name, 0.0) <= now:
                self.idle.pop(name, None)
                self.next_look[name] = now + self.dispatch(task, now)
        soonest = min(self.next_look.values(), default=now + pacing.IDLE_SAFETY_NET)
        if self.idle:
            soonest = min(soonest, self._next_idle_poll)
        return max(0.0, soonest - now)

    def shutdown(self):
        for watcher in list(self.watchers.values()):
            watcher.kill(block=False)

    # --- one task ------------------------------------------------------------------

    def dispatch(self, task: model.Task, now: float) -> float:
        """Start what the task may start now; returns the seconds until its next look."""
        candidates = self.catalog.candidates(task)
        state, _ = self.catalog.task_state(task.name, datetime.datetime.fromtimestamp(now, self.tz), candidates)
        budget = self.tracker.budget
        step = pacing.plan(connected=self.health.connected, state=state, limit=task.limit,
                           active=self.tracker.active[task.name], line_capacity=_capacity(candidates),
                           throttled_for=budget.wait(now), batch=self.config.dialer_claim_batch,
                           switch_room=_switch_room(budget, self.tracker))
        if not step.start:
            return step.look_again
        if task.pacing is not None and self.pacer is not None:
            room, changes_at = self.pacer.room(task, self.tracker.claims, now)
            if room <= 0:
                # Agent events wake the task at once; a busy agent's expected
                # end coming into reach does not, so the look is timed to it.
                return max(0.001, min(PACED_LOOK, changes_at - now)) if changes_at else PACED_LOOK
            step = pacing.Plan(min(step.start, room), step.look_again)
        granted = budget.take(step.start, now)
        if not granted:
            return max(budget.wait(now), 0.001)
        ids = [str(uuidlib.uuid4()) for _ in range(granted)]
        try:
            status, items, wake = self.store.claim_numbers(task.number_queue, task.name, candidates, ids, now,
                                                           self.config.dialer_line_lease_ttl, task.cps)
        except redis.ResponseError as exc:
            budget.give_back(granted)
            self._fault(task, "Redis refuses its number queue %r or redial set: %s" % (task.number_queue, exc))
            return FAULT_RETRY
        except REDIS_ERRORS as exc:
            budget.give_back(granted)
            self.health.redis_trouble_at = now        # the claim may have run: housekeeping looks soon
            log.warning("claim for task %r failed: %s", task.name, exc)
            return pacing.BLOCKED_WAIT
        if self.task_faults.pop(task.name, None):
            log.info("task %r: its queue is readable again", task.name)
        budget.give_back(granted - len(items))
        if items:
            self._turns.move_to_end(task.name)
        claims = []
        for cid, raw, line, group, origin in items:
            claim = Claim(claim_id=cid, kind=Kind.QUEUE, source_name=task.name, home_key=task.number_queue,
                          raw=raw, entry=None, line=line, group=group, claimed_at=now)
            if origin == HomeType.SORTED_SET.value:
                # A due redial: it goes back to the redial set if it cannot be sent.
                claim.home_key, claim.home_type, claim.home_raw, claim.score = \
                    self.store.keys.retries(task.name), HomeType.SORTED_SET, raw, now
                try:
                    claim.raw, claim.attempt_no, claim.done = redial_state(Kind.QUEUE, HomeType.SORTED_SET, raw)
                except model.ModelError as exc:
                    self.tracker.reject(claim, str(exc))
                    continue
            claims.append(claim)
        self.tracker.start(task, claims)
        if status == scripts.NO_LINE:
            self.wakeups.line_starved.add(task.name)
        elif status == scripts.EMPTY:
            self.idle[task.name] = task.number_queue
            self._watch_queue(task.name, task.number_queue)
            # It just found its queue empty: the next batched look can wait one interval.
            self._next_idle_poll = max(self._next_idle_poll, now + self.config.dialer_idle_poll_interval)
        return pacing.after_claim(status, wake, now)

    # --- idle tasks ----------------------------------------------------------------

    def _look_at_idle_queues(self, now):
        """One round trip: which idle tasks have a number or a due redial now.

        Tasks without a queue watcher are looked at every ``idle_poll_interval``;
        all idle tasks (watched ones for their redials) once a second.
        """
        if now >= self._next_full_look:
            self._next_full_look = now + WATCHED_IDLE_POLL
            idle = list(self.idle.items())
        else:
            idle = [(name, queue) for name, queue in self.idle.items() if name not in self.watchers]
        unwatched = any(name not in self.watchers for name in self.idle)
        self._next_idle_poll = min(self._next_full_look,
                                   now + self.config.dialer_idle_poll_interval) if unwatched else self._next_full_look
        if not idle:
            return set()
        try:
            ready = self.store.tasks_with_work(idle)
        except redis.ResponseError:
            # One queue of the wrong type fails the batched look for all:
            # look at each alone, and set the broken ones aside.
            return self._look_one_by_one(idle)
        except REDIS_ERRORS as exc:
            log.debug("idle look: %s", exc)
            return set()
        return {idle[index][0] for index in ready}

    def _look_one_by_one(self, idle):
        ready = set()
        for name, queue in idle:
            try:
                if self.store.tasks_with_work([(name, queue)]):
                    ready.add(name)
            except redis.ResponseError as exc:
                self.idle.pop(name, None)
                task = self.catalog.tasks.get(name)
                if task is not None:
                    self._fault(task, "Redis refuses its number queue %r or redial set: %s" % (queue, exc))
                    self.next_look[name] = self._next_full_look + FAULT_RETRY
            except REDIS_ERRORS:
                return ready
        return ready

    def _fault(self, task, reason):
        if self.task_faults.get(task.name) != reason:
            log.error("task %r cannot dial: %s", task.name, reason)
            self.catalog.report("task", task.name, task.number_queue, "", reason)
        self.task_faults[task.name] = reason

    def _watch_queue(self, name, queue):
        """Block on an idle task's queue (one connection each, up to ``idle_watchers``)."""
        watcher = self.watchers.get(name)
        if watcher is not None and not watcher.dead:
            return
        if not self.blocking_ok or len(self.watchers) >= self.config.dialer_idle_watchers:
            return
        self.watchers[name] = gevent.spawn(self._queue_watcher, name, queue)

    def _queue_watcher(self, name, queue):
        timeout = self.watch_block
        try:
            while self.idle.get(name) == queue and not self.health.stopping.is_set():
                try:
                    arrived = self.watch_store.wait_for_number(queue, timeout)
                except redis.ResponseError as exc:
                    if "unknown command" in str(exc).lower():
                        log.info("Redis refused BLMOVE (%s): idle queues are polled instead", exc)
                        self.blocking_ok = False
                    # Otherwise this queue's problem (WRONGTYPE: the claim
                    # reports it) or the server's moment (UNBLOCKED by a
                    # failover): the next empty claim watches again.
                    return
                except REDIS_ERRORS:
                    return          # the batched look covers the task meanwhile
                if arrived and self.idle.get(name) == queue:
                    self.idle.pop(name, None)
                    self.wakeups.task(name)
                    return
        finally:
            if self.watchers.get(name) is gevent.getcurrent():
                del self.watchers[name]


def _switch_room(budget, tracker):
    """Calls the switch's max-sessions leaves this host (None: no known limit)."""
    return None if budget.max_sessions is None else budget.max_sessions - len(tracker.claims)


def _capacity(candidates) -> int:
    """Summed limits of the candidate lines (across hosts; the claim script finds the free ones)."""
    return sum(limit for group in candidates.groups for _, limit in group)
