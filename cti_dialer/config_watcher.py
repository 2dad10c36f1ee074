"""The config watcher: ``config_change`` messages on pub/sub, plus full rereads.

Pub/sub drops messages while a subscriber is disconnected, so after every
(re)subscribe the whole configuration is reread, and the catalog rereads it
every ``reload_interval`` anyway. The watcher is also what tells the rest of
the daemon that Redis is up or down (``Health.redis_ok``): its connection is
the one that is always in use.

Messages are taken in batches: every message already waiting (up to
``DRAIN_MAX``) is read, the batch is coalesced (``messages.coalesce``) and
each distinct reread is done once, so a flood costs a few rereads, not one
per message. When messages come faster than they can be read at all (more
than ``DRAIN_MAX`` waiting at every loop for ``BEHIND_FOR``), the waiting
ones are dropped by resubscribing and everything is reread: a full reread
covers every message sent before it, so a real change behind a flood waits
about ``BEHIND_FOR``, not for the flood to be read.

Nothing a sender does makes the watcher write or log without bound: rejected
messages are recorded at most ``REJECT_LIMIT`` per channel per
``REJECT_PERIOD``, batches of applied changes logged at info level at
most ``APPLIED_LOG_LIMIT`` per ``LOG_PERIOD`` (a batch is one line per distinct
change, or one line for a flood); the rest are counted and a summary
is written when the period ends.
"""
import logging
from typing import Dict, List, Tuple

from . import messages
from .model import as_text
from .runtime import REDIS_ERRORS

log = logging.getLogger("cti_dialer")

# pub/sub is read with this timeout: never a blocking call that could hide a
# dead server for longer than this.
MESSAGE_WAIT = 1.0
RECONNECT_FIRST, RECONNECT_MAX = 0.5, 10.0
# Messages read in one loop at most: bounds the time one loop holds the
# greenlet and the memory a batch takes, whatever is published.
DRAIN_MAX = 1000
# More waiting after every batch for this long: the watcher is behind; it
# drops what is waiting and rereads everything.
BEHIND_FOR = 0.5
REJECT_LIMIT, REJECT_PERIOD = 10, 60.0
APPLIED_LOG_LIMIT, LOG_PERIOD = 30, 60.0


class _Limiter:
    """At most ``limit`` events per key in each ``period``; the rest are counted for a summary."""

    def __init__(self, limit: int, period: float):
        self.limit = limit
        self.period = period
        self._windows: Dict[str, list] = {}    # key -> [start, passed, held back, last detail]

    def admit(self, key: str, now: float, detail: str = "") -> bool:
        window = self._windows.setdefault(key, [now, 0, 0, ""])
        if window[1] < self.limit:
            window[1] += 1
            return True
        window[2] += 1
        window[3] = detail
        return False

    def ended(self, now: float) -> List[Tuple[str, int, float, str]]:
        """(key, held back, seconds, last detail) of the windows over with events held back; forgets them all."""
        out = []
        for key, (start, _, held, detail) in list(self._windows.items()):
            if now - start >= self.period:
                del self._windows[key]
                if held:
                    out.append((key, held, now - start, detail))
        return out

    def __bool__(self):
        return bool(self._windows)


class ConfigWatcher:
    def __init__(self, *, redis_client, keys, catalog, health, message_wait: float = MESSAGE_WAIT):
        self.redis = redis_client
        self.keys = keys
        self.catalog = catalog
        self.health = health
        self.message_wait = message_wait
        self.pubsub = None
        self._delay = RECONNECT_FIRST
        self._full_since = None             # first loop of the current run of full batches
        self.rejects = _Limiter(REJECT_LIMIT, REJECT_PERIOD)
        self.log_lines = _Limiter(APPLIED_LOG_LIMIT, LOG_PERIOD)

    def initialize(self):
        pass

    def loop(self, now: float) -> float:
        """Subscribe if needed, apply the messages waiting, reread when due; returns the wait."""
        try:
            if self.pubsub is None:
                self._subscribe(now)
            received, more = self._drain()
            self._summarize(now)
            if self._behind(more, now):
                self._resync(now, len(received))
            else:
                self.apply_batch(received, now)
            self.catalog.loop(now)
            return 0.0     # the first get_message of _drain is the wait
        except REDIS_ERRORS as exc:
            self.health.redis_down()
            self._close()
            wait, self._delay = self._delay, min(self._delay * 2, RECONNECT_MAX)
            log.warning("Redis unavailable (%s); retrying in %.1fs", exc, wait)
            return wait

    def shutdown(self):
        self._close()

    def _open(self, now):
        # Subscribe confirmations are read (and skipped) by _drain: ignoring
        # them in redis-py would make get_message return None for one, which
        # would end a drain while messages are still waiting.
        pubsub = self.redis.pubsub(ignore_subscribe_messages=False)
        self.pubsub = pubsub
        pubsub.subscribe(self.keys.channel_all, self.keys.channel_host)
        # Messages sent while we were away (or dropped) are lost: reread
        # everything once subscribed, so nothing between the two is missed.
        self.catalog.reload_all(now)

    def _subscribe(self, now):
        self._open(now)
        self.health.redis_up()
        self._delay = RECONNECT_FIRST

    def _close(self):
        self._full_since = None
        pubsub, self.pubsub = self.pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:
                pass

    def _drain(self) -> Tuple[List[Tuple[str, bytes]], bool]:
        """(channel, data) of the messages waiting, and whether more than DRAIN_MAX were.

        Waits message_wait for the first; reads at most DRAIN_MAX + 1.
        """
        received = []
        timeout = self.message_wait
        for _ in range(DRAIN_MAX + 1):
            msg = self.pubsub.get_message(timeout=timeout)
            if msg is None:
                return received, False
            timeout = 0
            if msg.get("type") == "message":
                received.append((as_text(msg["channel"]), msg["data"]))
        # (DRAIN_MAX + 1 reads, so bursts of exactly DRAIN_MAX do not look like a backlog)
        return received, True

    def _behind(self, more: bool, now: float) -> bool:
        if not more:
            self._full_since = None
            return False
        if self._full_since is None:
            self._full_since = now
        return now - self._full_since >= BEHIND_FOR

    def _resync(self, now: float, dropped: int) -> None:
        """Drop every message waiting (the connection holds them) and reread everything instead."""
        if self.log_lines.admit("resync", now):
            log.warning("config_change messages come faster than they can be read: dropping the %d+ waiting "
                        "and rereading everything instead (a full reread covers them all)", dropped)
        self._close()
        self._open(now)

    def apply_batch(self, received, now: float) -> None:
        """Handle received (channel, data) messages: reject the bad ones, do each distinct reread once.

        When the catalog's full reread is due it supersedes them all: it runs
        right after, in the same loop.
        """
        changes = []
        channel_of: Dict[Tuple, str] = {}     # (table, key) -> the latest channel
        for channel, data in received:
            try:
                change = messages.parse_config_change(data)
            except messages.BadMessage as exc:
                if self.rejects.admit(channel, now, str(exc)):
                    self.catalog.report("message", "", channel, data, str(exc))
                continue
            changes.append(change)
            channel_of[change] = channel
        if not changes:
            return
        if self.catalog.reload_due(now):
            log.debug("config_change: %d message(s) covered by the full reread now due", len(changes))
            return
        rereads = messages.coalesce(changes)
        for change in rereads:
            self.catalog.apply(change)
        distinct = list(dict.fromkeys(changes))
        level = logging.INFO if self.log_lines.admit("applied", now) else logging.DEBUG
        if len(distinct) <= messages.MAX_KEYS_PER_TABLE:
            for change in distinct:     # each is applied: done, or covered by a whole reread
                log.log(level, "config_change on %s: table=%s key=%s applied",
                        channel_of[change], change.table, change.key)
        else:
            log.log(level, "config_change: %d message(s), %d distinct, applied by %s", len(changes), len(distinct),
                    "rereading everything" if rereads[0].key is None else "%d reread(s)" % len(rereads))

    def _summarize(self, now: float) -> None:
        """One record or line for each period that ended with records or lines held back."""
        for channel, held, seconds, last in self.rejects.ended(now):
            self.catalog.report("message", "", channel, "",
                                "%d more bad message(s) in %ds not recorded one by one (at most %d per %ds); "
                                "the last: %s" % (held, seconds, REJECT_LIMIT, REJECT_PERIOD, last),
                                suppressed=held)
        for what, held, seconds, _ in self.log_lines.ended(now):
            if what == "applied":
                log.info("config_change: %d more batch(es) applied in %ds, logged at debug level only "
                         "(at most %d per %ds at info)", held, seconds, APPLIED_LOG_LIMIT, LOG_PERIOD)
            else:
                log.warning("config_change: fell behind %d more time(s) in %ds; everything was reread each time",
                            held, seconds)
