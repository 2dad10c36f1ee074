"""The config watcher: ``config_change`` messages on pub/sub, plus full rereads.

Pub/sub drops messages while a subscriber is disconnected, so after every
(re)subscribe the whole configuration is reread, and the catalog rereads it
every ``reload_interval`` anyway. The watcher is also what tells the rest of
the daemon that Redis is up or down (``Health.redis_ok``): its connection is
the one that is always in use.
"""
import logging

from . import messages
from .model import as_text
from .runtime import REDIS_ERRORS

log = logging.getLogger("cti_dialer")

# pub/sub is read with this timeout: never a blocking call that could hide a
# dead server for longer than this.
MESSAGE_WAIT = 1.0
RECONNECT_FIRST, RECONNECT_MAX = 0.5, 10.0


class ConfigWatcher:
    def __init__(self, *, redis_client, keys, catalog, health, message_wait: float = MESSAGE_WAIT):
        self.redis = redis_client
        self.keys = keys
        self.catalog = catalog
        self.health = health
        self.message_wait = message_wait
        self.pubsub = None
        self._delay = RECONNECT_FIRST

    def initialize(self):
        pass

    def loop(self, now: float) -> float:
        """Subscribe if needed, apply at most one message, reread when due; returns the wait."""
        try:
            if self.pubsub is None:
                self._subscribe(now)
            msg = self.pubsub.get_message(timeout=self.message_wait)
            if msg and msg.get("type") == "message":
                self.apply(as_text(msg["channel"]), msg["data"])
            self.catalog.loop(now)
            return 0.0     # get_message above is the wait
        except REDIS_ERRORS as exc:
            self.health.redis_down()
            self._close()
            wait, self._delay = self._delay, min(self._delay * 2, RECONNECT_MAX)
            log.warning("Redis unavailable (%s); retrying in %.1fs", exc, wait)
            return wait

    def shutdown(self):
        self._close()

    def _subscribe(self, now):
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        self.pubsub = pubsub
        pubsub.subscribe(self.keys.channel_all, self.keys.channel_host)
        # Messages sent while we were away are lost: reread everything once
        # subscribed, so nothing between the two is missed.
        self.catalog.reload_all(now)
        self.health.redis_up()
        self._delay = RECONNECT_FIRST

    def _close(self):
        pubsub, self.pubsub = self.pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:
                pass

    def apply(self, channel: str, data) -> None:
        """Handle one config_change message; a bad one is rejected with a record, never fatal."""
        try:
            change = messages.parse_config_change(data)
        except messages.BadMessage as exc:
            self.catalog.report("message", "", channel, data, str(exc))
            return
        self.catalog.apply(change)
        log.info("config_change on %s: table=%s key=%s applied", channel, change.table, change.key)
