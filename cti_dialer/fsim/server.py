"""A FreeSWITCH stand-in speaking the inbound event socket protocol.

Everything that touches sockets, channels and timers runs in one gevent hub
(the caller's, or a private one in a native thread with ``start_in_thread``).
Other threads only assign plain attributes or read copies taken under a
short native lock, so nothing here depends on monkey-patching.

The parts: ``event_socket`` (clients and their commands), ``api`` (what
``api``/``bgapi`` can run), ``switch`` (channels, timers, job results) and
``events`` (what events look like on the wire).
"""
import copy
import logging
import random
from collections import deque
from typing import Callable, Dict, Iterable, List, Optional

import gevent
import gevent.event
import gevent.server
from gevent import monkey

from .api import ApiCommands
from .callcenter import CallCenter, CallCenterScripting
from .clock import SwitchClock
from .event_socket import CommandRecord, Connections, EventSocket
from .outcome import Outcome, OutcomeMix
from .switch import OriginateRecord, Switch
from .wire import SHUTDOWN_NOTICE

log = logging.getLogger("cti_dialer.fsim")

# The originals, so a monkey-patched process still gets a real thread and
# real locks for the cross-thread parts.
_get_ident = monkey.get_original("_thread", "get_ident")
_allocate_lock = monkey.get_original("_thread", "allocate_lock")
_start_new_thread = monkey.get_original("_thread", "start_new_thread")


class _Setting:
    """A public attribute of the simulator that one of its parts owns and reads."""

    def __init__(self, part: str):
        self._part = part

    def __set_name__(self, owner, name):
        self._name = name

    def __get__(self, sim, owner=None):
        if sim is None:
            return self
        return getattr(getattr(sim, self._part), self._name)

    def __set__(self, sim, value):
        setattr(getattr(sim, self._part), self._name, value)


def _checked(outcome):
    if not isinstance(outcome, (Outcome, OutcomeMix)):
        raise TypeError("outcome must be an Outcome or an OutcomeMix")
    return outcome


class FreeSwitchSimulator:
    host = _Setting("_switch")             # also reported as FreeSWITCH-IPv4
    hostname = _Setting("_switch")
    gateways = _Setting("_switch")         # None accepts any gateway name
    default_outcome = _Setting("_switch")
    sps = _Setting("_switch")
    max_sessions = _Setting("_switch")
    max_concurrent = _Setting("_switch")
    password = _Setting("_event_socket")
    denied_commands = _Setting("_event_socket")   # e.g. {"originate"}: "-ERR permission denied"
    silent = _Setting("_connections")      # no output at all, sockets stay open

    def __init__(self, host: str = "127.0.0.1", port: int = 0, password: str = "ClueCon",
                 gateways: Optional[Iterable[str]] = None, hostname: str = "fsim",
                 log_limit: Optional[int] = None, seed: Optional[int] = 0,
                 clock_tick_ms: int = 20, clock_lag_ms: int = 20, shutdown_grace_ms: int = 500):
        """``seed`` drives every random choice (event order, where the ticks fall), so a run
        can be repeated; None seeds from the system. ``clock_tick_ms`` 0 stamps events with
        the exact wall clock instead of the switch's ticks. ``shutdown_grace_ms`` is how long
        a stopping switch still takes originates (never answering them) before it hangs up
        on its clients.
        """
        self.port = port
        if isinstance(gateways, str):
            gateways = [gateways]
        # A long benchmark can cap the logs; None keeps everything.
        self.log_limit = log_limit
        self.shutdown_grace_ms = shutdown_grace_ms
        self.on_down: Optional[Callable[[], None]] = None   # called in the hub once a shutdown is over
        self._lock = _allocate_lock()
        self._connections = Connections()
        rng = random.Random(seed)
        self._switch = Switch(self._connections.emit, self._lock, host, hostname,
                              frozenset(gateways) if gateways is not None else None, log_limit,
                              rng, SwitchClock(rng, clock_tick_ms, clock_lag_ms))
        self._callcenter = CallCenter(self._switch, log_limit)
        self._switch.callcenter = self._callcenter
        # mod_callcenter's queues and agents: ``sim.callcenter.add_queue(...)`` (see ``callcenter``).
        self.callcenter = CallCenterScripting(self._call, self._callcenter)
        self._event_socket = EventSocket(self._connections, self._switch,
                                         ApiCommands(self._switch, self._shutdown_soon),
                                         password, self._lock, log_limit)
        self._server = None
        self._running = False
        self._down_timer = None
        self._loop = None
        self._hub_ident = None
        self._thread_stop = None
        self._thread_exit = None

    # --- lifecycle -----------------------------------------------------------

    def start(self):
        """Bind and listen in the current gevent hub; returns at once."""
        if self._running:
            raise RuntimeError("simulator already started")
        hub = gevent.get_hub()
        self._loop = hub.loop
        self._switch.loop = hub.loop
        self._hub_ident = _get_ident()
        self._callcenter.started()
        self._listen()
        self._running = True
        self._switch.reset_core()
        log.info("fsim listening on %s:%s", self.host, self.port)
        return self

    def _listen(self):
        server = gevent.server.StreamServer((self.host, self.port), self._event_socket.serve, backlog=1024)
        server.start()
        self._server = server
        self.port = server.address[1]

    def stop(self):
        """Close the listener, every connection and every channel (no hangup events)."""
        if self._thread_stop is not None and _get_ident() != self._hub_ident:
            self.stop_thread()
            return
        if not self._running:
            return
        self._running = False
        self._cancel_down()
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self._connections.close_all(notice=True)
        self._switch.forget_channels()
        self._connections.wait_writers()
        log.info("fsim on %s:%s stopped", self.host, self.port)

    def start_in_thread(self, timeout: float = 10.0):
        """Run the server in a native thread with its own hub; returns once listening."""
        if self._thread_stop is not None or self._running:
            raise RuntimeError("simulator already started")
        started = _allocate_lock()
        started.acquire()
        finished = _allocate_lock()
        finished.acquire()
        box = {}

        def main():
            hub = gevent.get_hub()
            try:
                stop_event = gevent.event.Event()
                self.start()
                self._thread_stop = stop_event
            except BaseException as exc:  # reported to the starting thread
                box["error"] = exc
                started.release()
                finished.release()
                return
            started.release()
            # A switch that shut itself down has nothing left to watch; this
            # keeps the hub waiting for a restart or a stop instead of exiting.
            keepalive = hub.loop.async_()
            keepalive.start(lambda: None)
            try:
                stop_event.wait()
            finally:
                keepalive.close()
                try:
                    self.stop()
                except Exception:
                    log.exception("fsim stop failed")
                self._thread_stop = None
                try:
                    hub.destroy(destroy_loop=True)
                except Exception:
                    pass
                finished.release()

        self._thread_exit = finished
        _start_new_thread(main, ())
        if not started.acquire(True, timeout):
            raise RuntimeError("simulator thread did not start within %ss" % timeout)
        if "error" in box:
            raise box["error"]
        return self

    def stop_thread(self, timeout: float = 10.0):
        stop_event, loop, finished = self._thread_stop, self._loop, self._thread_exit
        if stop_event is None or loop is None:
            return
        loop.run_callback_threadsafe(stop_event.set)
        if finished is not None and not finished.acquire(True, timeout):
            raise RuntimeError("simulator thread did not stop within %ss" % timeout)
        self._thread_exit = None

    def _call(self, fn: Callable, *args):
        """Run fn in the hub's thread and return its result."""
        if self._thread_stop is None or _get_ident() == self._hub_ident:
            return fn(*args)
        done = _allocate_lock()
        done.acquire()
        box = []

        def run():
            try:
                box.append((True, fn(*args)))
            except BaseException as exc:
                box.append((False, exc))
            finally:
                done.release()

        self._loop.run_callback_threadsafe(run)
        if not done.acquire(True, 10.0):
            raise RuntimeError("simulator hub did not respond")
        ok, value = box[0]
        if not ok:
            raise value
        return value

    # --- scripting -----------------------------------------------------------

    def script_gateway(self, gateway: str, outcome: Outcome):
        self._switch.gateway_outcomes[gateway] = _checked(outcome)

    def script_number(self, number: str, outcome: Outcome):
        self._switch.number_outcomes[number] = _checked(outcome)

    def clear_scripts(self):
        self._switch.gateway_outcomes = {}
        self._switch.number_outcomes = {}

    # --- observation ---------------------------------------------------------

    def commands(self) -> List[CommandRecord]:
        with self._lock:
            return list(self._event_socket.command_log)

    def originates(self) -> List[OriginateRecord]:
        with self._lock:
            return [copy.copy(r) for r in self._switch.originate_log]

    def active_channels(self) -> Dict[str, OriginateRecord]:
        """The calls up now, by the originate's uuid (a two-leg call's B leg is not listed)."""
        with self._lock:
            return {u: copy.copy(ch.rec) for u, ch in self._switch.a_legs().items()}

    def connections(self) -> int:
        return len(self._connections)

    def reset_log(self):
        with self._lock:
            self._event_socket.command_log = deque(maxlen=self.log_limit)
            self._switch.originate_log = deque(maxlen=self.log_limit)
            self._switch.max_concurrent = self._switch.calls

    # --- faults --------------------------------------------------------------

    def drop_connections(self, notice: bool = True):
        self._call(self._connections.close_all, notice)

    def restart(self, notice: bool = False):
        """Come back empty, as a restarted FreeSWITCH does; after ``shutdown`` it listens again."""
        self._call(self._restart, notice)

    def shutdown(self, grace_ms: Optional[int] = None):
        """Stop like a real switch: SHUTDOWN to subscribers, every call hung up with
        SYSTEM_SHUTDOWN, originates taken but never answered for ``grace_ms``, then
        "The system is being shut down." to every client and no more connections
        until ``restart``. Returns at once."""
        self._call(self._shutdown, self.shutdown_grace_ms if grace_ms is None else grace_ms)

    def is_down(self) -> bool:
        """True once a shutdown has closed the listener."""
        return self._running and self._server is None

    def hangup_all(self, cause: str = "NORMAL_CLEARING") -> int:
        return self._call(self._switch.hangup_all, cause)

    def _restart(self, notice):
        self._cancel_down()
        self._connections.close_all(notice)
        self._switch.forget_channels()
        self._switch.reset_core()
        if self._running and self._server is None:
            self._listen()

    def _shutdown_soon(self):
        """For ``api shutdown``: its +OK goes out first."""
        self._loop.run_callback(self._shutdown, self.shutdown_grace_ms)

    def _shutdown(self, grace_ms: int):
        if self._server is None or self._switch.shutting_down:
            return
        log.info("fsim on %s:%s shutting down", self.host, self.port)
        self._switch.shutdown()
        self._down_timer = self._loop.timer(max(0, grace_ms) / 1000.0)
        self._down_timer.start(self._go_down)

    def _go_down(self):
        self._cancel_down()
        server, self._server = self._server, None
        if server is not None:
            server.close()
        self._connections.close_all(SHUTDOWN_NOTICE)
        self._switch.forget_channels()
        if self.on_down is not None:
            self.on_down()

    def _cancel_down(self):
        timer, self._down_timer = self._down_timer, None
        if timer is not None:
            timer.close()
