"""What the daemon's components share at run time: connection health and wake-ups.

Components never call each other to say "look again": they mark it here and
the component concerned picks it up at its next ``loop``. That keeps data
flowing one way (config watcher and call tracker -> wake-ups -> dispatchers)
and lets unit tests drive each component with no other one present.
"""
import logging
import time
from typing import Callable, Iterable, List, Optional, Set

import gevent
import gevent.event
import redis

log = logging.getLogger("cti_dialer")

# Any Redis failure: connection trouble is retried, any other Redis error is
# a bug or a bad server state and is reported, never allowed to kill a loop.
REDIS_ERRORS = (redis.RedisError, OSError)
# The ones worth waiting out with results kept in memory.
RETRYABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, redis.ReadOnlyError, OSError)


class Health:
    """Whether Redis and the switch are usable, and whether the daemon is stopping."""

    def __init__(self, esl_ready: Optional[gevent.event.Event] = None):
        self.redis_ok = gevent.event.Event()
        self.esl_ready = esl_ready if esl_ready is not None else gevent.event.Event()
        self.stopping = gevent.event.Event()
        self.recovered = gevent.event.Event()    # this host's in-flight records were settled once
        self.redis_connects = 0
        # Why the switch refuses our originates ("" while it does not): an
        # error state shown in status and metrics until one is accepted.
        self.switch_fault = ""
        self.name_lost = False      # another instance holds this host's name: stop, exit 1
        # Last time a Redis reply may have been lost (a reconnect, a failed
        # claim): a claim script may have run without our hearing of it.
        self.redis_trouble_at = 0.0
        # Events to set when Redis comes back (harnesses of loops that want
        # to act at once: the heartbeat, the result writer).
        self.on_redis_back: List[gevent.event.Event] = []

    @property
    def connected(self) -> bool:
        return self.redis_ok.is_set() and self.esl_ready.is_set()

    def redis_up(self):
        if self.redis_connects:
            self.redis_trouble_at = time.time()
        self.redis_connects += 1
        if not self.redis_ok.is_set():
            log.info("Redis connected")
        self.redis_ok.set()
        for event in self.on_redis_back:
            event.set()

    def redis_down(self):
        self.redis_ok.clear()


class Wakeups:
    """Which dispatchers should look again now, and why.

    ``queue`` and ``schedule`` are the events the queue dispatcher's and the
    schedule dialer's harnesses wait on between loops.
    """

    def __init__(self):
        self.queue = gevent.event.Event()
        self.schedule = gevent.event.Event()
        self._tasks: Set[str] = set()
        self._all = False
        # Tasks whose last claim found every line full: a call ending
        # anywhere on this host may free a line they can use.
        self.line_starved: Set[str] = set()

    def task(self, name: str):
        self._tasks.add(name)
        self.queue.set()

    def tasks(self, names: Iterable[str]):
        for name in names:
            self.task(name)

    def everything(self):
        self._all = True
        self.queue.set()
        self.schedule.set()

    def slot_freed(self, owner: str, scheduled: bool):
        """A call of ``owner`` ended: its task, and any task starved of lines, may start one."""
        if scheduled:
            self.schedule.set()
        else:
            self.task(owner)
        if self.line_starved:
            starved, self.line_starved = self.line_starved, set()
            self.tasks(starved)

    def take_tasks(self):
        """(everything?, task names) woken since the last take; clears both."""
        woken, every = self._tasks, self._all
        self._tasks, self._all = set(), False
        return every, woken


def run_loop(name: str, loop: Callable[[float], float], wake: gevent.event.Event, stopping: gevent.event.Event):
    """Call ``loop(now)`` until stopping; between calls wait what it returned, or until ``wake``.

    The event is cleared *before* each call, so a wake that comes while the
    loop runs is never lost. A Redis failure is logged and retried a second
    later; anything else propagates to the daemon's supervisor (a bug).
    """
    while not stopping.is_set():
        wake.clear()
        try:
            wait = loop(time.time())
        except REDIS_ERRORS as exc:
            log.warning("%s: %s", name, exc)
            wait = 1.0
        if wait > 0:
            wake.wait(wait)
        else:
            gevent.sleep(0)     # others run between two immediate looks
