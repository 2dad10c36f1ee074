"""The FreeSWITCH event socket: the only module that imports greenswitch.

greenswitch 0.0.19 has no reconnect, waits forever for the greeting and for
replies, sends with ``socket.send`` (which may write part of a command), and
URL-decodes an event body *before* splitting it into lines, so a ``%0A`` in a
caller name can forge headers. ``_Connection`` keeps its reader loop but
replaces those parts; ``EslClient`` owns one connection at a time and rebuilds
it after any fault.
"""
import dataclasses
import logging
import re
import time
from typing import Callable, Dict, FrozenSet, Optional, Tuple
from urllib.parse import unquote

import gevent
import gevent.event
import gevent.lock
import gevent.socket
from greenswitch import esl as gs

log = logging.getLogger("cti_dialer.esl")

# SHUTDOWN: a switch being stopped keeps accepting originates for a moment
# and never runs them; the daemon must stop sending the moment it hears this.
EVENTS = ("BACKGROUND_JOB", "CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE", "SHUTDOWN")


class EslError(Exception):
    """The command could not be completed; the connection has been dropped."""


class EslNotSent(EslError):
    """Not a byte of the command was written: it certainly did not run."""


# --- typed events (what the daemon sees) -------------------------------------

@dataclasses.dataclass(frozen=True)
class JobResult:
    job_uuid: str
    body: str


@dataclasses.dataclass(frozen=True)
class Answered:
    uuid: str
    ts: float


@dataclasses.dataclass(frozen=True)
class HungUp:
    uuid: str
    cause: str
    billsec: int
    answered: bool
    ts: float
    # The channel's own times on the switch's clock (None when absent):
    # durations come from these, never from two different clocks.
    started: Optional[float] = None
    answered_at: Optional[float] = None
    ended: Optional[float] = None
    # A two-leg endpoint (loopback/) whose second leg was never made (the
    # switch refused it for capacity): nothing rang, whatever the cause says.
    second_leg_missing: bool = False
    # What the far end said: the final SIP response (SIP channels only) and
    # the Q.850 number of the cause, for the line groups' redial rules.
    sip_code: Optional[int] = None
    q850: Optional[int] = None
    # Channel variables asked for beyond WANTED_HEADERS (machine detection), by name.
    variables: Tuple[Tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class CallcenterInfo:
    """mod_callcenter's ``CUSTOM callcenter::info`` event: an agent or a queue member changed."""
    action: str             # CC-Action: agent-status-change, bridge-agent-start, member-queue-end...
    queue: str
    agent: str
    agent_status: str
    agent_state: str
    member_session: str     # CC-Member-Session-UUID: the member's channel (our call's uuid)
    cause: str              # CC-Cause of member-queue-end: Terminated, Cancel
    ts: float


@dataclasses.dataclass(frozen=True)
class SwitchShutdown:
    """The switch announced a graceful stop (``shutdown``)."""


@dataclasses.dataclass(frozen=True)
class Disconnected:
    reason: str


# The headers the daemon reads; every other header of an event is skipped
# without being decoded (events carry a hundred channel variables or more).
WANTED_HEADERS = frozenset({
    "Event-Name", "Job-UUID", "Unique-ID", "Hangup-Cause", "Content-Length", "Event-Date-Timestamp",
    "variable_billsec", "variable_answer_epoch", "variable_start_uepoch", "variable_answer_uepoch",
    "variable_end_uepoch", "Channel-Name", "variable_other_loopback_leg_uuid",
    "variable_sip_term_status", "variable_hangup_cause_q850",
    "Event-Subclass", "CC-Action", "CC-Queue", "CC-Agent", "CC-Agent-Status", "CC-Agent-State",
    "CC-Member-Session-UUID", "CC-Cause",
})
CALLCENTER_SUBCLASS = "callcenter::info"


def _wanted_regex(wanted: FrozenSet[str]):
    return re.compile(r"^(%s): (.*)$" % "|".join(re.escape(h) for h in sorted(wanted)), re.M)


_WANTED_RE = _wanted_regex(WANTED_HEADERS)
# One compiled regex per header set a connection asks for (the daemon's
# machine-detection variables add to WANTED_HEADERS once, at start).
_REGEXES: Dict[FrozenSet[str], "re.Pattern"] = {WANTED_HEADERS: _WANTED_RE}


def wanted_headers(variables=()) -> FrozenSet[str]:
    """WANTED_HEADERS plus ``variable_<name>`` for each channel variable named."""
    return WANTED_HEADERS | frozenset("variable_" + name for name in variables)


def parse_event_plain(data: bytes, wanted=WANTED_HEADERS) -> Tuple[Dict[str, str], str]:
    """Split a text/event-plain body into headers and trailing body.

    Lines are split first and each value URL-decoded afterwards, so an
    encoded newline stays inside its own value. The first occurrence of a
    header wins: FreeSWITCH writes its own headers before channel variables.
    Only headers in ``wanted`` are kept (None keeps all).
    """
    text = data.decode("utf-8", "replace")
    head, sep, rest = text.partition("\n\n")
    headers: Dict[str, str] = {}
    if wanted is not None and isinstance(wanted, frozenset):
        # The hot path: a regex in C finds the few wanted lines among a
        # hundred. Anchored at real line starts, so an encoded %0A inside a
        # value can never look like one.
        regex = _REGEXES.get(wanted)
        if regex is None:
            regex = _REGEXES[wanted] = _wanted_regex(wanted)
        matches = regex.findall(head)
    else:
        matches = [line.partition(": ")[::2] for line in head.split("\n") if ": " in line]
    for name, value in matches:
        if name in headers or (wanted is not None and name not in wanted):
            continue
        value = value.rstrip("\r")
        headers[name] = unquote(value) if "%" in value else value
    body = ""
    if sep:
        length = headers.get("Content-Length")
        if length and length.isdigit():
            body = rest.encode("utf-8")[: int(length)].decode("utf-8", "replace")
        else:
            body = rest
    return headers, body


def _epoch(headers, name):
    value = headers.get(name, "")
    try:
        return int(value) / 1_000_000 if len(value) > 12 else float(value)
    except ValueError:
        return time.time()


def _uepoch(headers, name) -> Optional[float]:
    """A channel time variable in microseconds; None when absent or 0 (never happened)."""
    value = headers.get(name, "")
    return int(value) / 1_000_000 if value.isdigit() and value != "0" else None


def to_typed(headers: Dict[str, str], body: str):
    """The event as one of the small types above, or None if not ours to care about."""
    name = headers.get("Event-Name")
    if name == "SHUTDOWN":
        return SwitchShutdown()
    if name == "BACKGROUND_JOB":
        job = headers.get("Job-UUID")
        return JobResult(job, body) if job else None
    if name == "CUSTOM":
        if headers.get("Event-Subclass") != CALLCENTER_SUBCLASS:
            return None
        return CallcenterInfo(headers.get("CC-Action", ""), headers.get("CC-Queue", ""), headers.get("CC-Agent", ""),
                              headers.get("CC-Agent-Status", ""), headers.get("CC-Agent-State", ""),
                              headers.get("CC-Member-Session-UUID", ""), headers.get("CC-Cause", ""),
                              _epoch(headers, "Event-Date-Timestamp"))
    uuid = headers.get("Unique-ID")
    if not uuid:
        return None
    if name == "CHANNEL_ANSWER":
        return Answered(uuid, _epoch(headers, "Event-Date-Timestamp"))
    if name == "CHANNEL_HANGUP_COMPLETE":
        try:
            billsec = int(headers.get("variable_billsec", "0") or 0)
        except ValueError:
            billsec = 0
        answered = billsec > 0 or headers.get("variable_answer_epoch", "0") not in ("", "0")
        missing = (not answered and headers.get("Channel-Name", "").startswith("loopback/")
                   and not headers.get("variable_other_loopback_leg_uuid"))
        return HungUp(uuid, headers.get("Hangup-Cause", "") or "UNKNOWN", billsec, answered,
                      _epoch(headers, "Event-Date-Timestamp"), _uepoch(headers, "variable_start_uepoch"),
                      _uepoch(headers, "variable_answer_uepoch"), _uepoch(headers, "variable_end_uepoch"),
                      missing, _code(headers, "variable_sip_term_status"), _code(headers, "variable_hangup_cause_q850"),
                      tuple((name[9:], value) for name, value in headers.items()
                            if name.startswith("variable_") and name not in WANTED_HEADERS))
    return None


def _code(headers, name) -> Optional[int]:
    """A numeric code header, or None when absent or not a number (never an error: it only informs rules)."""
    value = headers.get(name, "")
    return int(value) if value.isdigit() and len(value) <= 4 else None


# --- one connection ------------------------------------------------------------

class _Connection(gs.InboundESL):
    """greenswitch's reader with bounded waits, whole writes and safe parsing."""

    def __init__(self, host, port, password, timeout, on_event, wanted=WANTED_HEADERS):
        super().__init__(host, port, password, timeout=timeout)
        self._on_event = on_event
        self._wanted = wanted
        self._write_lock = gevent.lock.Semaphore()
        self.closed = gevent.event.Event()
        self.last_heard = time.monotonic()
        self.shutting_down = False

    def start_event_handlers(self):
        # Only the reader: events go straight to on_event, never to
        # greenswitch's queue (whose consumer polls once a second).
        self._receive_events_greenlet = gevent.spawn(self._reader)

    def _reader(self):
        try:
            self.receive_events()
        except Exception:
            log.exception("ESL reader failed")
        finally:
            self.close()

    def handle_event(self, event):
        self.last_heard = time.monotonic()
        ctype = event.headers.get("Content-Type")
        if ctype == "text/event-plain":
            length = int(event.headers.get("Content-Length", "0"))
            data = self._read_exact(length)
            headers, body = parse_event_plain(data, self._wanted)
            typed = to_typed(headers, body)
            if isinstance(typed, SwitchShutdown):
                # From now on the switch would accept originates and silently
                # never run them: refuse to write any (EslNotSent: never dialed).
                self.shutting_down = True
            if typed is not None:
                self._on_event(typed)
        elif ctype == "api/response":
            # Read the body here: greenswitch's reader spins forever without
            # yielding when the peer closes inside a body.
            data = self._read_exact(int(event.headers.get("Content-Length", "0") or 0))
            if not self._commands_sent:
                raise EslError("unsolicited api/response")
            event.data = data.decode("utf-8", "replace")
            self._commands_sent.pop(0).set(event)
        elif ctype == "text/rude-rejection":
            self._read_exact(int(event.headers.get("Content-Length", "0") or 0))
            raise EslError("rude rejection (FreeSWITCH ACL refused this address)")
        elif ctype in ("command/reply", "auth/request", "text/disconnect-notice"):
            if ctype == "command/reply" and not self._commands_sent:
                raise EslError("unsolicited command/reply")
            super().handle_event(event)
            if ctype == "text/disconnect-notice" and not self._lingering:
                self.close()
        else:
            length = int(event.headers.get("Content-Length", "0") or 0)
            if length:
                self._read_exact(length)

    def _read_exact(self, length):
        data = self.sock_file.read(length) if length else b""
        while data is not None and len(data) < length:
            more = self.sock_file.read(length - len(data))
            if not more:
                raise EslError("connection closed inside a message body")
            data += more
        if data is None or len(data) < length:
            raise EslError("connection closed inside a message body")
        return data

    def send_async(self, data) -> gevent.event.AsyncResult:
        """Write one command whole; the reply arrives on the returned result."""
        if not self.connected or self.closed.is_set():
            raise EslNotSent("not connected")
        if self.shutting_down and data.startswith("bgapi"):
            raise EslNotSent("the switch is shutting down")
        result = gevent.event.AsyncResult()
        raw = (data + "\n\n").encode("utf-8")
        with self._write_lock:
            # Append and write under one lock: replies are matched to
            # commands by order, so the order of writes must be the order of
            # the list.
            if self.closed.is_set():
                raise EslNotSent("connection closed")
            self._commands_sent.append(result)
            try:
                self.sock.sendall(raw)
            except OSError as exc:
                self.close()
                raise EslError("write failed: %s" % exc) from None
        return result

    def close(self):
        if self.closed.is_set():
            return
        self.closed.set()
        self.connected = False
        self._run = False
        # Wake a connect() still waiting for the greeting.
        self._auth_request_event.set()
        pending, self._commands_sent = self._commands_sent, []
        for result in pending:
            result.set_exception(EslError("connection closed"))
        try:
            self.sock.close()
        except Exception:
            pass


class EslClient:
    """Keeps one authenticated, subscribed connection; rebuilds it after faults.

    ``on_event`` receives JobResult, Answered, HungUp, SwitchShutdown and
    Disconnected values from the reader greenlet and must not block.
    ``ready`` is set while a connection is usable (cleared as soon as the
    switch announces its shutdown).
    """

    def __init__(self, host, port, password, *, connect_timeout=5.0, command_timeout=10.0,
                 reconnect_max=30.0, keepalive=5.0, on_event: Callable = None, on_connect: Callable = None,
                 variables=(), custom=()):
        self.host, self.port, self._password = host, port, password
        self._wanted = wanted_headers(variables)
        # CUSTOM event subclasses to subscribe to as well (mod_callcenter's callcenter::info).
        self._custom = tuple(custom)
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.reconnect_max = reconnect_max
        self.keepalive = keepalive
        self.on_event = on_event or (lambda event: None)
        self.on_connect = on_connect or (lambda: None)
        self.ready = gevent.event.Event()
        self.reconnects = 0
        self._conn: Optional[_Connection] = None
        self._stopping = False
        self._greenlet = None

    def __repr__(self):
        # Never show the password.
        return "EslClient(%s:%s)" % (self.host, self.port)

    def apply_settings(self, config):
        """Take reloaded timeouts (SIGHUP); the next wait uses them."""
        self.connect_timeout = config.esl_connect_timeout
        self.command_timeout = config.esl_command_timeout
        self.reconnect_max = config.esl_reconnect_max
        self.keepalive = config.esl_keepalive

    def start(self):
        self._greenlet = gevent.spawn(self._run)
        return self._greenlet

    def stop(self):
        self._stopping = True
        conn = self._conn
        if conn is not None:
            conn.close()
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=2)

    def _deliver(self, event):
        if isinstance(event, SwitchShutdown):
            log.warning("FreeSWITCH %s:%s is shutting down: no more originates until it is back",
                        self.host, self.port)
            self.ready.clear()
        self.on_event(event)

    def _connect_once(self):
        conn = _Connection(self.host, self.port, self._password, self.connect_timeout, self._deliver, self._wanted)
        events = " ".join(EVENTS + (("CUSTOM",) + self._custom if self._custom else ()))
        try:
            with gevent.Timeout(self.connect_timeout, EslError("no greeting or auth reply within %ss" % self.connect_timeout)):
                conn.connect()
                reply = conn.send_async("event plain " + events).get()
            if not reply.headers.get("Reply-Text", "").startswith("+OK"):
                raise EslError("event subscription refused: %s" % reply.headers.get("Reply-Text"))
        except ValueError:
            conn.close()
            raise EslError("authentication refused (check [esl] password)") from None
        except gs.NotConnectedError as exc:
            conn.close()
            raise EslError(str(exc) or "connection refused") from None
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self):
        delay = 0.5
        while not self._stopping:
            try:
                conn = self._connect_once()
            except (EslError, OSError, gevent.Timeout) as exc:
                log.warning("ESL %s:%s unavailable: %s; retrying in %.1fs", self.host, self.port, exc, delay)
                gevent.sleep(delay)
                delay = min(delay * 2, self.reconnect_max)
                continue
            self._conn = conn
            self.reconnects += 1
            log.info("ESL connected to %s:%s", self.host, self.port)
            delay = 0.5
            self.ready.set()
            try:
                self.on_connect()
            except Exception:
                log.exception("ESL on_connect failed")
            prober = gevent.spawn(self._probe, conn)
            conn.closed.wait()
            prober.kill(block=False)
            self.ready.clear()
            self._conn = None
            if not self._stopping:
                log.warning("ESL connection to %s:%s lost", self.host, self.port)
                self.on_event(Disconnected("connection lost"))
                gevent.sleep(0.2)

    def _probe(self, conn):
        """A switch that stops talking is found out: after ``keepalive`` seconds of
        silence a cheap command must be answered within ``command_timeout``,
        else the connection is dropped and rebuilt (calls waiting for events
        are then reconciled with uuid_exists)."""
        while not conn.closed.is_set():
            quiet = time.monotonic() - conn.last_heard
            if quiet < self.keepalive:
                conn.closed.wait(self.keepalive - quiet)
                continue
            try:
                self.wait(conn.send_async("api status"))
            except EslError:
                return

    # --- commands -----------------------------------------------------------------

    def _conn_or_raise(self):
        conn = self._conn
        if conn is None or conn.closed.is_set():
            raise EslNotSent("not connected")
        return conn

    def send_async(self, command: str) -> gevent.event.AsyncResult:
        return self._conn_or_raise().send_async(command)

    def wait(self, result: gevent.event.AsyncResult, timeout=None):
        """The reply to an earlier send_async; a timeout drops the connection."""
        try:
            return result.get(timeout=timeout or self.command_timeout)
        except gevent.Timeout:
            self.drop("no reply within %ss" % (timeout or self.command_timeout))
            raise EslError("command timed out") from None

    def drop(self, reason):
        conn = self._conn
        if conn is not None:
            log.warning("dropping ESL connection: %s", reason)
            conn.close()

    def api(self, command: str, timeout=None) -> str:
        """Run ``api <command>`` and return its body."""
        reply = self.wait(self.send_async(command), timeout)
        return getattr(reply, "data", "") or ""
