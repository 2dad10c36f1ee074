"""The daemon: wiring only.

It builds the components, each owning one concern, and runs each one's
``loop(now)`` in a greenlet of its own (``runtime.run_loop``):

- ``Catalog`` (catalog.py): the configuration as last read; reread on a timer;
- ``ConfigWatcher`` (config_watcher.py): pub/sub ``config_change`` messages;
- ``QueueDispatcher`` (dispatcher.py): claims numbers of tasks, watches idle queues;
- ``ScheduleDialer`` (schedule_dialer.py): claims due schedule members;
- ``CallTracker`` (tracker.py): follows every claim through the lifecycle table;
- ``ResultWriter`` (writer.py): writes results and requeues, keeps them while Redis is away;
- ``Housekeeping`` (housekeeping.py): heartbeat, leases, status, sweep, takeover.

They share ``runtime.Health`` (is Redis up, is the switch up, are we
stopping) and ``runtime.Wakeups`` (who should look again now). Signal
handlers only set events.
"""
import datetime
import logging
import os
import signal
import time
from typing import List

import gevent
import gevent.event

from . import __version__, keys as keymod, settings
from . import store as store_module
from .agents import AgentBoard
from .catalog import Catalog
from .config_watcher import ConfigWatcher
from .dispatcher import WATCH_BLOCK, QueueDispatcher
from .esl import CALLCENTER_SUBCLASS, EslClient, EslError
from .housekeeping import Housekeeping
from .metrics import make_registry, serve
from .pacer import Pacer
from .pacing import SendBudget
from .runtime import REDIS_ERRORS, Health, Wakeups, run_loop
from .schedule_dialer import ScheduleDialer
from .sdnotify import Notifier
from .store import Store
from .tracker import CallTracker
from .writer import ResultWriter

log = logging.getLogger("cti_dialer")


class Daemon:
    def __init__(self, config, redis_client=None, config_path=None, on_reload=None):
        self.config = config
        self.config_path = config_path
        self.on_reload = on_reload          # re-applies logging settings after SIGHUP
        self.host = config.dialer_host
        self.tz = config.dialer_timezone
        self.keys = keymod.Keys(self.host, config.dialer_domain)
        self.redis = redis_client or store_module.connect(config)
        self.store = Store(self.redis, self.keys, result_maxlen=config.dialer_result_maxlen,
                           rejected_maxlen=config.dialer_rejected_maxlen, result_channel=config.dialer_result_channel)
        # Blocked calls hold their connection for seconds: a pool of their
        # own, whose reads wait out a whole block.
        watch_block = None
        watch_store = self.store
        if redis_client is None:
            watch_block = WATCH_BLOCK
            watch_store = Store(store_module.connect(config, config.dialer_idle_watchers + 1,
                                                     read_timeout=config.redis_socket_timeout + WATCH_BLOCK), self.keys)
        self.esl = EslClient(config.esl_host, config.esl_port, config.esl_password,
                             connect_timeout=config.esl_connect_timeout,
                             command_timeout=config.esl_command_timeout,
                             reconnect_max=config.esl_reconnect_max, keepalive=config.esl_keepalive,
                             on_connect=self._on_esl_connect,
                             variables=[name for name, _ in config.dialer_machine_variables],
                             custom=(CALLCENTER_SUBCLASS,))
        self.health = Health(self.esl.ready)
        self.wakeups = Wakeups()
        self.registry, latency = make_registry(self)
        self.catalog = Catalog(store=self.store, keys=self.keys, tz=self.tz,
                               reload_interval=config.dialer_reload_interval, wakeups=self.wakeups)
        self.writer = ResultWriter(self.store, state_dir(config))
        self.budget = SendBudget(config.dialer_throttle_backoff, config.dialer_throttle_backoff_max)
        self.agents = AgentBoard(esl=self.esl, catalog=self.catalog, wakeups=self.wakeups)
        self.pacer = Pacer(self.agents, self.catalog)
        self.tracker = CallTracker(config=config, host=self.host, store=self.store, esl=self.esl,
                                   catalog=self.catalog, writer=self.writer, wakeups=self.wakeups,
                                   health=self.health, budget=self.budget, latency=latency, pacer=self.pacer)
        self.esl.on_event = self.tracker.on_event       # events go straight to the call tracker
        self.watcher = ConfigWatcher(redis_client=self.redis, keys=self.keys, catalog=self.catalog,
                                     health=self.health)
        self.dispatcher = QueueDispatcher(config=config, catalog=self.catalog, tracker=self.tracker,
                                          store=self.store, watch_store=watch_store, health=self.health,
                                          wakeups=self.wakeups, tz=self.tz, pacer=self.pacer,
                                          watch_block=watch_block)
        self.scheduler = ScheduleDialer(config=config, catalog=self.catalog, tracker=self.tracker,
                                        store=self.store, health=self.health, tz=self.tz)
        self.housekeeping = Housekeeping(config=config, store=self.store, catalog=self.catalog,
                                         tracker=self.tracker, writer=self.writer, health=self.health,
                                         esl=self.esl, tz=self.tz, task_faults=self.dispatcher.task_faults,
                                         pacer=self.pacer)
        self.housekeeping_wake = gevent.event.Event()
        self.health.on_redis_back += [self.housekeeping_wake, self.writer.wake]
        self.stopping = self.health.stopping
        self.notifier = Notifier()
        self.reload_requested = gevent.event.Event()
        self.metrics_server = None
        self._greenlets: List[gevent.Greenlet] = []
        self._dispatchers: List[gevent.Greenlet] = []

    # --- lifecycle -----------------------------------------------------------------

    def run(self):
        """Run until SIGTERM/SIGINT (or ``stop()``); returns the exit status."""
        gevent.signal_handler(signal.SIGTERM, self.stopping.set)
        gevent.signal_handler(signal.SIGINT, self.stopping.set)
        gevent.signal_handler(signal.SIGHUP, self.reload_requested.set)
        if not self.claim_host_name():
            # Refused (another instance runs under this name) is a failure
            # systemd must see; a stop asked for while waiting is not.
            return 0 if self.stopping.is_set() else 1
        self.start()
        self.stopping.wait()
        self.shutdown()
        return 1 if self.health.name_lost else 0

    def claim_host_name(self):
        ttl = store_module.HOST_NAME_TTL
        deadline = None
        while not self.stopping.is_set():
            try:
                hold = self.store.claim_host(ttl=ttl)
            except REDIS_ERRORS as exc:
                log.warning("cannot claim host name %s yet: %s", self.host, exc)
                self.stopping.wait(1)
                continue
            if hold.ok:
                log.info("host name %s claimed by instance %s", self.host, self.store.instance_id)
                return True
            deadline = deadline or time.time() + ttl + 2.0
            if time.time() >= deadline:
                log.error("host name %s is held by another running instance %s (its claim has %.1fs left): "
                          "refusing to start", self.host, hold.holder, hold.ttl)
                return False
            log.warning("host name %s is held by instance %s (%.1fs left): waiting for it to expire",
                        self.host, hold.holder, hold.ttl)
            self.stopping.wait(0.5)
        return False

    def start(self):
        config = self.config
        redis_at = _safe_url(config.redis_url) if not config.redis_sentinels else "sentinel %s at %s" % (
            config.redis_sentinel_service, ",".join("%s:%d" % hp for hp in config.redis_sentinels))
        log.info("cti-dialer %s starting: host=%s domain=%s redis=%s esl=%s:%s",
                 __version__, self.host, self.keys.domain, redis_at, config.esl_host, config.esl_port)
        if config.metrics_listen:
            self.metrics_server = serve(self.registry, config.metrics_listen)
        self.esl.start()
        config_wake = gevent.event.Event()
        for name, component, wake in (("config watcher", self.watcher, config_wake),
                                      ("result writer", self.writer, self.writer.wake),
                                      ("housekeeping", self.housekeeping, self.housekeeping_wake),
                                      ("agent board", self.agents, gevent.event.Event())):
            self._greenlets.append(self._spawn_component(name, component, wake))
        for fn in (self.tracker.event_loop, self._start_dialing, self._systemd_loop, self._reload_loop,
                   self._ready_watch):
            self._greenlets.append(gevent.spawn(self._supervise, fn))

    def stop(self):
        self.stopping.set()

    def shutdown(self):
        """No new claims; let dispatch steps in progress end; write what is pending; exit."""
        log.info("stopping: no new claims; %d call(s) stay up on the switch and are followed after restart",
                 len(self.tracker.claims))
        self.notifier.stopping()
        deadline = time.time() + self.config.dialer_drain_timeout
        # Loops end on their own at their next look at ``stopping``: killing
        # one between "mark sent" and the originate would record UNKNOWN for a
        # number that was never dialed.
        self.wakeups.everything()
        gevent.joinall(self._dispatchers, timeout=max(0.5, deadline - time.time()))
        for g in self._dispatchers:
            g.kill(block=False)
        self.dispatcher.shutdown()
        self.tracker.join_helpers(deadline)
        if not self.writer.drain(deadline):
            saved = self.writer.save_journal()
            if saved:
                log.warning("Redis unreachable: %d result(s) and requeue(s) kept in %s, written at the next start",
                            saved, self.writer.journal)
            else:
                log.error("%d result(s) and %d requeue(s) not written to Redis before exit and no journal "
                          "([dialer] state_dir); their numbers stay in-flight and are settled at the next start",
                          len(self.writer.results), len(self.writer.requeues))
        self.housekeeping.shutdown()
        if not self.health.name_lost:
            try:
                self.store.release_host()
            except REDIS_ERRORS:
                pass
        for g in self._greenlets:
            g.kill(block=False)
        self.watcher.shutdown()
        if self.metrics_server is not None:
            self.metrics_server.stop(timeout=1)
        self.esl.stop()
        log.info("stopped")

    def _spawn_component(self, name, component, wake):
        def run():
            component.initialize()
            run_loop(name, component.loop, wake, self.stopping)
        run.__name__ = name
        return gevent.spawn(self._supervise, run)

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

    def _start_dialing(self):
        """Settle this host's in-flight numbers once, then start the dispatchers."""
        replayed = self.writer.load_journal()
        if replayed:
            log.info("journal %s: %d result(s) and requeue(s) from before the last stop go to Redis first",
                     self.writer.journal, replayed)
        while not self.stopping.is_set():
            self.esl.ready.wait(1)
            self.health.redis_ok.wait(1)
            if not self.health.connected:
                continue
            try:
                counts = self.tracker.recover(self.store.inflight())
                if counts:
                    log.info("recovered in-flight numbers: %d requeued (never dialed), %d still up and followed, "
                             "%d ended while we were away (recorded as UNKNOWN), %d decided results written",
                             counts["requeued"], counts["followed"], counts["unknown"], counts["settled"])
                break
            except (EslError, *REDIS_ERRORS) as exc:
                log.warning("recovery postponed: %s", exc)
                self.stopping.wait(1)
        if self.stopping.is_set():
            return
        if self.housekeeping.switch_limits_stale:
            self.housekeeping.read_switch_limits(time.time())
        self.health.recovered.set()
        self._dispatchers = [self._spawn_component("queue dispatcher", self.dispatcher, self.wakeups.queue),
                             self._spawn_component("schedule dialer", self.scheduler, self.wakeups.schedule)]

    # --- readiness, systemd and SIGHUP ------------------------------------------------------

    def _on_esl_connect(self):
        # Before anyone dials on this connection: a restarted switch may have new limits.
        self.housekeeping.read_switch_limits(time.time())
        self.wakeups.everything()
        self.tracker.on_switch_connected()

    def _ready_watch(self):
        """Log "ready" (and tell systemd) once Redis, the switch and the configuration are all there."""
        while not (self.health.connected and self.catalog.loaded.is_set()):
            self.stopping.wait(0.05)
            if self.stopping.is_set():
                return
        log.info("ready: connected to Redis, subscribed to %s and %s, logged in to ESL",
                 self.keys.channel_all, self.keys.channel_host)
        self.notifier.ready(self.summary())

    def summary(self):
        """One line for systemd's STATUS= (shown by systemctl status)."""
        dt = datetime.datetime.fromtimestamp(time.time(), self.tz)
        running = sum(1 for name in self.catalog.tasks if self.catalog.task_state(name, dt)[0] == "running")
        pending = len(self.writer.results)
        return "%d call(s) up, %d/%d task(s) running, ESL %s, Redis %s%s" % (
            len(self.tracker.claims), running, len(self.catalog.tasks) + len(self.catalog.task_errors),
            "up" if self.esl.ready.is_set() else "DOWN", "up" if self.health.redis_ok.is_set() else "DOWN",
            ", %d result(s) waiting for Redis" % pending if pending else "")

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
            self.store.result_channel = self.config.dialer_result_channel
            self.store.rejected_maxlen = self.config.dialer_rejected_maxlen
            self.budget.backoff = self.config.dialer_throttle_backoff
            self.budget.backoff_max = self.config.dialer_throttle_backoff_max
            if self.on_reload is not None:
                self.on_reload(self.config)
            log.info("reloaded %s: changed %s%s", self.config_path or "defaults", ", ".join(changed) or "nothing",
                     "; needing a restart (ignored): %s" % ", ".join(restart) if restart else "")
            self.wakeups.everything()
            self.notifier.ready(self.summary())


def state_dir(config) -> str:
    """The journal's directory: [dialer] state_dir, else systemd's StateDirectory=, else none."""
    path = config.dialer_state_dir or os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if not path:
        return ""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        log.error("state_dir %s unusable (%s): no journal", path, exc)
        return ""
    return path


def _safe_url(url):
    """The Redis URL without its password, for logs."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return "%s://***@%s" % (scheme, rest.rpartition("@")[2])
    return url
