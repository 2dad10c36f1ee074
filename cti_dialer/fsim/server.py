"""A FreeSWITCH stand-in speaking the inbound event socket protocol.

Everything that touches sockets, channels and timers runs in one gevent hub
(the caller's, or a private one in a native thread with ``start_in_thread``).
Other threads only assign plain attributes or read copies taken under a
short native lock, so nothing here depends on monkey-patching.
"""
import copy
import dataclasses
import email.utils
import itertools
import logging
import socket
import time
import uuid as uuidlib
from collections import deque
from typing import Callable, Deque, Dict, Iterable, List, NamedTuple, Optional, Tuple

import gevent
import gevent.event
import gevent.server
from gevent import monkey

from .originate import OriginateError, parse_originate, separate_string, split_api
from .outcome import Outcome
from .wire import (AUTH_REQUEST, DISCONNECT_NOTICE, CommandReader, api_response, command_reply,
                   event_json, event_plain)

log = logging.getLogger("cti_dialer.fsim")

# The originals, so a monkey-patched process still gets a real thread and
# real locks for the cross-thread parts.
_get_ident = monkey.get_original("_thread", "get_ident")
_allocate_lock = monkey.get_original("_thread", "allocate_lock")
_start_new_thread = monkey.get_original("_thread", "start_new_thread")

VERSION = "1.10.12-release+fsim 64bit"

SHOW_CHANNELS_HEADER = (
    "uuid,direction,created,created_epoch,name,state,cid_name,cid_num,ip_addr,dest,application,"
    "application_data,dialplan,context,read_codec,read_rate,read_bit_rate,write_codec,write_rate,"
    "write_bit_rate,secure,hostname,presence_id,presence_data,accountcode,callstate,callee_name,"
    "callee_num,callee_direction,call_uuid,sent_callee_name,sent_callee_num,initial_cid_name,"
    "initial_cid_num,initial_ip_addr,initial_dest,initial_dialplan,initial_context")

SHOW_USAGE = ("-USAGE: codec|endpoint|application|api|dialplan|file|timer|calls [count]|"
              "channels [count|like <match string>]|calls|detailed_calls|bridged_calls|"
              "detailed_bridged_calls|aliases|complete|chat|management|modules|nat_map|say|"
              "interfaces|interface_types|tasks|limits|status\n")

EVENT_NAMES = frozenset("""
CUSTOM CLONE CHANNEL_CREATE CHANNEL_DESTROY CHANNEL_STATE CHANNEL_CALLSTATE CHANNEL_ANSWER
CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE CHANNEL_EXECUTE CHANNEL_EXECUTE_COMPLETE CHANNEL_HOLD
CHANNEL_UNHOLD CHANNEL_BRIDGE CHANNEL_UNBRIDGE CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA
CHANNEL_OUTGOING CHANNEL_PARK CHANNEL_UNPARK CHANNEL_APPLICATION CHANNEL_ORIGINATE CHANNEL_UUID
API LOG INBOUND_CHAN OUTBOUND_CHAN STARTUP SHUTDOWN PUBLISH UNPUBLISH TALK NOTALK SESSION_CRASH
MODULE_LOAD MODULE_UNLOAD DTMF MESSAGE PRESENCE_IN NOTIFY_IN PRESENCE_OUT PRESENCE_PROBE
MESSAGE_WAITING MESSAGE_QUERY ROSTER CODEC BACKGROUND_JOB DETECTED_SPEECH DETECTED_TONE
PRIVATE_COMMAND HEARTBEAT TRAP ADD_SCHEDULE DEL_SCHEDULE EXE_SCHEDULE RE_SCHEDULE RELOADXML NOTIFY
PHONE_FEATURE PHONE_FEATURE_SUBSCRIBE SEND_MESSAGE RECV_MESSAGE REQUEST_PARAMS CHANNEL_DATA GENERAL
COMMAND SESSION_HEARTBEAT CLIENT_DISCONNECTED SERVER_DISCONNECTED SEND_INFO RECV_INFO
RECV_RTCP_MESSAGE SEND_RTCP_MESSAGE CALL_SECURE NAT RECORD_START RECORD_STOP PLAYBACK_START
PLAYBACK_STOP CALL_UPDATE FAILURE SOCKET_DATA MEDIA_BUG_START MEDIA_BUG_STOP CONFERENCE_DATA_QUERY
CONFERENCE_DATA CALL_SETUP_REQ CALL_SETUP_RESULT CALL_DETAIL DEVICE_STATE TEXT SHUTDOWN_REQUESTED ALL
""".split())

Q850 = {
    "UNALLOCATED_NUMBER": 1, "NO_ROUTE_TRANSIT_NET": 2, "NO_ROUTE_DESTINATION": 3,
    "NORMAL_CLEARING": 16, "USER_BUSY": 17, "NO_USER_RESPONSE": 18, "NO_ANSWER": 19,
    "SUBSCRIBER_ABSENT": 20, "CALL_REJECTED": 21, "NUMBER_CHANGED": 22,
    "DESTINATION_OUT_OF_ORDER": 27, "INVALID_NUMBER_FORMAT": 28, "FACILITY_REJECTED": 29,
    "NORMAL_UNSPECIFIED": 31, "NORMAL_CIRCUIT_CONGESTION": 34, "NETWORK_OUT_OF_ORDER": 38,
    "NORMAL_TEMPORARY_FAILURE": 41, "SWITCH_CONGESTION": 42, "REQUESTED_CHAN_UNAVAIL": 44,
    "BEARERCAPABILITY_NOTAVAIL": 58, "SERVICE_UNAVAILABLE": 63, "INCOMPATIBLE_DESTINATION": 88,
    "RECOVERY_ON_TIMER_EXPIRE": 102, "PROTOCOL_ERROR": 111, "INTERWORKING": 127,
    "ORIGINATOR_CANCEL": 487, "MANAGER_REQUEST": 503, "ALLOTTED_TIMEOUT": 602,
    "MEDIA_TIMEOUT": 604, "GATEWAY_DOWN": 609, "INVALID_GATEWAY": 608,
}
_CAUSE_BY_CODE = {v: k for k, v in Q850.items()}

_LOG_LEVELS = {"console": 0, "alert": 1, "crit": 2, "err": 3, "error": 3, "warning": 4,
               "notice": 5, "info": 6, "debug": 7}

# (file, function, line) FreeSWITCH reports as the origin of each event.
_CALLING = {
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", "586"),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", "3993"),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", "3488"),
    "CHANNEL_HANGUP_COMPLETE": ("switch_core_state_machine.c", "switch_core_session_reporting_state", "1104"),
    "BACKGROUND_JOB": ("mod_event_socket.c", "api_exec", "1572"),
}

# Channel-State / Channel-State-Number / Channel-Call-State / Answer-State per event.
_STATES = {
    "CHANNEL_CREATE": ("CS_INIT", "1", "DOWN", "ringing"),
    "CHANNEL_ANSWER": ("CS_CONSUME_MEDIA", "7", "ACTIVE", "answered"),
    "CHANNEL_HANGUP": ("CS_HANGUP", "10", "HANGUP", "hangup"),
    "CHANNEL_HANGUP_COMPLETE": ("CS_REPORTING", "11", "HANGUP", "hangup"),
}

# FreeSWITCH's own listener gives up on a client this far behind.
_MAX_PENDING_WRITES = 100000


class CommandRecord(NamedTuple):
    ts: float
    conn_id: int
    raw: str


@dataclasses.dataclass
class OriginateRecord:
    ts: float
    conn_id: int
    job_uuid: Optional[str]
    uuid: str
    variables: Dict[str, str]
    dialstring: str
    endpoint: str
    number: str
    extension: str
    dialplan: str
    context: str
    raw: str
    multi_destination: bool
    outcome_kind: str
    cause: str
    # Beyond the basic fields: how it was sent and where it ended up.
    via: str = "bgapi"             # "api" or "bgapi"
    cid_name: Optional[str] = None
    cid_num: Optional[str] = None
    timeout: int = 60
    state: str = ""                # ringing, answered, hungup, failed, forgotten
    answered: bool = False
    billsec: int = 0


class _Job:
    __slots__ = ("kind", "job_uuid", "command", "arg", "waiter")

    def __init__(self, kind, job_uuid, command, arg):
        self.kind = kind
        self.job_uuid = job_uuid
        self.command = command
        self.arg = arg
        self.waiter = gevent.event.AsyncResult() if kind == "api" else None


class _Channel:
    __slots__ = ("uuid", "rec", "outcome", "job", "timer", "name", "created", "answered_at",
                 "ended_at", "cause", "billsec", "profile", "variables")

    def __init__(self, uuid, rec, outcome, job, name, created):
        self.uuid = uuid
        self.rec = rec
        self.outcome = outcome
        self.job = job
        self.timer = None
        self.name = name
        self.created = created
        self.answered_at = None
        self.ended_at = None
        self.cause = ""
        self.billsec = 0
        self.profile = None      # encoded lazily: only if someone listens
        self.variables = None


class _Conn:
    __slots__ = ("id", "sock", "peer", "out", "wake", "closing", "sending", "authed", "events_on",
                 "events", "all_events", "custom", "fmt", "filters", "writer", "pending", "log_level")

    def __init__(self, cid, sock, peer):
        self.id = cid
        self.sock = sock
        self.peer = peer
        self.out: List[bytes] = []
        self.wake = gevent.event.Event()
        self.closing = False
        self.sending = False
        self.authed = False
        self.events_on = False
        self.events = set()
        self.all_events = False
        self.custom = set()
        self.fmt = "plain"
        self.filters: List[Tuple[str, str]] = []
        self.writer = None
        self.pending = set()
        self.log_level = None


def _us(ts: Optional[float]) -> str:
    return str(int(ts * 1_000_000)) if ts else "0"


def _cause_from_arg(text: Optional[str], default: str) -> str:
    if not text:
        return default
    if text.isdigit():
        return _CAUSE_BY_CODE.get(int(text), default)
    upper = text.upper()
    if all(c.isalnum() or c == "_" for c in upper) and upper.isascii():
        return upper
    return default


def _filters_pass(filters, headers) -> bool:
    for name, value in filters:
        lname = name.lower()
        for hname, hval in headers:
            if hname.lower() == lname and hval.lower() == value.lower():
                return True
    return False


class FreeSwitchSimulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, password: str = "ClueCon",
                 gateways: Optional[Iterable[str]] = None, hostname: str = "fsim",
                 log_limit: Optional[int] = None):
        self.host = host
        self.port = port
        self.password = password
        if isinstance(gateways, str):
            gateways = [gateways]
        self.gateways = frozenset(gateways) if gateways is not None else None
        self.hostname = hostname
        self.default_outcome = Outcome.answer()
        self.sps: Optional[int] = None
        self.max_sessions: Optional[int] = None
        self.silent = False
        self.max_concurrent = 0
        self._gw_scripts: Dict[str, Outcome] = {}
        self._num_scripts: Dict[str, Outcome] = {}
        self._lock = _allocate_lock()
        # A long benchmark can cap the logs; None keeps everything.
        self.log_limit = log_limit
        self._commands: Deque[CommandRecord] = deque(maxlen=log_limit)
        self._originates: Deque[OriginateRecord] = deque(maxlen=log_limit)
        self._channels: Dict[str, _Channel] = {}
        self._route_timers: Dict[_Job, object] = {}   # failures still "ringing" without a channel
        self._conns: Dict[int, _Conn] = {}
        self._live: Dict[int, _Conn] = {}
        self._conn_ids = itertools.count(1)
        self._seq = 0
        self._server = None
        self._loop = None
        self._hub_ident = None
        self._thread_stop = None
        self._thread_exit = None
        self._date_cache = (0, "", "")
        self._reset_core()

    def _reset_core(self):
        self._core_uuid = str(uuidlib.uuid4())
        self._started_at = time.time()
        self._sessions_total = 0
        self._peak = 0
        self._sps_window = 0.0
        self._sps_count = 0
        self._sps_peak = 0

    # --- lifecycle -----------------------------------------------------------

    def start(self):
        """Bind and listen in the current gevent hub; returns at once."""
        if self._server is not None:
            raise RuntimeError("simulator already started")
        hub = gevent.get_hub()
        self._loop = hub.loop
        self._hub_ident = _get_ident()
        server = gevent.server.StreamServer((self.host, self.port), self._handle, backlog=1024)
        server.start()
        self._server = server
        self.port = server.address[1]
        self._reset_core()
        log.info("fsim listening on %s:%s", self.host, self.port)
        return self

    def stop(self):
        """Close the listener, every connection and every channel (no hangup events)."""
        if self._thread_stop is not None and _get_ident() != self._hub_ident:
            self.stop_thread()
            return
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for conn in list(self._conns.values()):
            self._close_conn(conn, notice=True)
        self._forget_channels()
        writers = [c.writer for c in list(self._live.values()) if c.writer is not None]
        if writers:
            gevent.joinall(writers, timeout=2)
            gevent.killall([w for w in writers if not w.dead], block=True, timeout=1)
        log.info("fsim on %s:%s stopped", self.host, self.port)

    def start_in_thread(self, timeout: float = 10.0):
        """Run the server in a native thread with its own hub; returns once listening."""
        if self._thread_stop is not None or self._server is not None:
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
            try:
                stop_event.wait()
            finally:
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
        if not isinstance(outcome, Outcome):
            raise TypeError("outcome must be an Outcome")
        self._gw_scripts[gateway] = outcome

    def script_number(self, number: str, outcome: Outcome):
        if not isinstance(outcome, Outcome):
            raise TypeError("outcome must be an Outcome")
        self._num_scripts[number] = outcome

    def clear_scripts(self):
        self._gw_scripts = {}
        self._num_scripts = {}

    # --- observation ---------------------------------------------------------

    def commands(self) -> List[CommandRecord]:
        with self._lock:
            return list(self._commands)

    def originates(self) -> List[OriginateRecord]:
        with self._lock:
            return [copy.copy(r) for r in self._originates]

    def active_channels(self) -> Dict[str, OriginateRecord]:
        with self._lock:
            return {u: copy.copy(ch.rec) for u, ch in self._channels.items()}

    def connections(self) -> int:
        return len(self._conns)

    def reset_log(self):
        with self._lock:
            self._commands = deque(maxlen=self.log_limit)
            self._originates = deque(maxlen=self.log_limit)
            self.max_concurrent = len(self._channels)

    # --- faults --------------------------------------------------------------

    def drop_connections(self, notice: bool = True):
        self._call(self._drop_all, notice)

    def restart(self, notice: bool = False):
        self._call(self._restart, notice)

    def hangup_all(self, cause: str = "NORMAL_CLEARING") -> int:
        return self._call(self._hangup_all, cause)

    def _drop_all(self, notice):
        for conn in list(self._conns.values()):
            self._close_conn(conn, notice)

    def _restart(self, notice):
        self._drop_all(notice)
        self._forget_channels()
        self._reset_core()

    def _forget_channels(self):
        with self._lock:
            channels, self._channels = self._channels, {}
            for ch in channels.values():
                ch.rec.state = "forgotten"
        for ch in channels.values():
            if ch.timer is not None:
                ch.timer.close()
                ch.timer = None
            ch.job = None
        timers, self._route_timers = self._route_timers, {}
        for timer in timers.values():
            timer.close()

    def _hangup_all(self, cause):
        channels = list(self._channels.values())
        for ch in channels:
            self._hangup(ch, cause)
        return len(channels)

    # --- connections ---------------------------------------------------------

    def _handle(self, sock, address):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        conn = _Conn(next(self._conn_ids), sock, address)
        self._conns[conn.id] = conn
        self._live[conn.id] = conn
        conn.writer = gevent.spawn(self._writer, conn)
        self._send(conn, AUTH_REQUEST)
        reader = CommandReader()
        try:
            while not conn.closing:
                try:
                    data = sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                for cmd in reader.feed(data):
                    if conn.closing:
                        break
                    self._process(conn, cmd)
                # recv does not yield while data is waiting; give timers and
                # other connections their turn between reads.
                gevent.sleep(0)
        except gevent.GreenletExit:
            pass
        except Exception:
            log.exception("fsim connection %s failed", conn.id)
        finally:
            self._close_conn(conn, notice=False)
            # The server closes the socket once this returns; let the writer
            # deliver what is queued (a reply to exit, a notice) first.
            if conn.writer is not None and conn.writer is not gevent.getcurrent():
                conn.writer.join(timeout=3)

    def _writer(self, conn: _Conn):
        sock = conn.sock
        try:
            while True:
                conn.wake.wait()
                conn.wake.clear()
                if conn.out:
                    chunks, conn.out = conn.out, []
                    if not self.silent:
                        data = b"".join(chunks)
                        if conn.closing:
                            with gevent.Timeout(2, False):
                                sock.sendall(data)
                        else:
                            conn.sending = True
                            sock.sendall(data)
                            conn.sending = False
                if conn.closing and not conn.out:
                    break
        except (OSError, gevent.GreenletExit):
            pass
        except Exception:
            log.exception("fsim writer %s failed", conn.id)
        finally:
            conn.closing = True
            self._conns.pop(conn.id, None)
            self._live.pop(conn.id, None)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
            for waiter in list(conn.pending):
                waiter.set(None)

    def _send(self, conn: _Conn, data: bytes):
        if conn.closing or self.silent:
            return
        conn.out.append(data)
        if len(conn.out) > _MAX_PENDING_WRITES:
            log.warning("fsim connection %s is not reading; dropping it", conn.id)
            conn.out = []
            self._close_conn(conn, notice=False)
            return
        if not conn.wake.is_set():
            conn.wake.set()

    def _close_conn(self, conn: _Conn, notice: bool):
        if conn.closing:
            return
        if notice:
            self._send(conn, DISCONNECT_NOTICE)
        conn.closing = True
        self._conns.pop(conn.id, None)
        for waiter in list(conn.pending):
            waiter.set(None)
        if conn.sending and conn.writer is not None:
            # Stuck writing to a client that does not read: cut it off.
            conn.writer.kill(block=False)
        conn.wake.set()

    # --- commands ------------------------------------------------------------

    def _process(self, conn: _Conn, cmd):
        line = cmd.line
        low = line[:9].lower()
        raw = cmd.raw
        if low.startswith("auth ") or low.startswith("userauth "):
            raw = line.split(" ", 1)[0] + " ****"
        with self._lock:
            self._commands.append(CommandRecord(time.time(), conn.id, raw))
        if low.startswith("exit") or low.startswith("..."):
            self._send(conn, command_reply("+OK bye"))
            self._close_conn(conn, notice=True)
            return
        if not conn.authed:
            if low.startswith("auth "):
                if line[5:] == self.password:
                    conn.authed = True
                    self._send(conn, command_reply("+OK accepted"))
                else:
                    self._send(conn, command_reply("-ERR invalid"))
                    self._close_conn(conn, notice=True)
            elif low.startswith("userauth "):
                self._send(conn, command_reply("-ERR invalid"))
                self._close_conn(conn, notice=True)
            else:
                self._send(conn, command_reply("-ERR command not found"))
            return
        if low.startswith("api "):
            self._api(conn, line[4:], cmd)
            return
        if low.startswith("bgapi "):
            self._bgapi(conn, line[6:], cmd)
            return
        reply = self._control(conn, line, low)
        self._send(conn, command_reply(reply))

    def _control(self, conn: _Conn, line: str, low: str) -> str:
        if low.startswith("filter "):
            return self._filter(conn, line[7:])
        if low.startswith("divert_ev"):
            return "-ERR not controlling a session."
        if low.startswith("sendmsg"):
            target = line[7:].strip() or None
            if target and target in self._channels:
                return "+OK"
            return "-ERR invalid session id [%s]" % (target or "(null)")
        if low.startswith("sendevent"):
            return "+OK %s" % uuidlib.uuid4()
        if low.startswith("log"):
            level = line[4:].strip() if len(line) > 3 else ""
            if not level:
                value = 7
            elif level.isascii() and level.isdigit():
                value = int(level) if int(level) <= 7 else None
            else:
                value = _LOG_LEVELS.get(level.lower())
            if value is None:
                return "-ERR invalid log level"
            conn.log_level = value
            return "+OK log level %s [%d]" % (level, value)
        if low.startswith("linger") or low.startswith("nolinger"):
            return "-ERR not controlling a session"
        if low.startswith("nolog"):
            if conn.log_level is None:
                return "-ERR not loging"
            conn.log_level = None
            return "+OK no longer logging"
        if low.startswith("event"):
            return self._event_cmd(conn, line)
        if low.startswith("nixevent"):
            return self._nixevent(conn, line)
        if low.startswith("noevents"):
            if not conn.events_on:
                return "-ERR not listening for events"
            conn.events_on = False
            conn.events = set()
            conn.custom = set()
            conn.all_events = False
            return "+OK no longer listening for events"
        return "-ERR command not found"

    def _event_cmd(self, conn: _Conn, line: str) -> str:
        space = line.find(" ", 5)
        keys = 0
        if space >= 0:
            custom = False
            for i, token in enumerate(line[space + 1:].split(" ")):
                if i == 0 and token.lower() in ("plain", "json", "xml"):
                    if token.lower() == "xml":
                        return "-ERR xml events are not supported by this simulator"
                    conn.fmt = token.lower()
                    continue
                if custom:
                    conn.custom.add(token)
                    continue
                name = token.upper()
                if name.startswith("SWITCH_EVENT_"):
                    name = name[13:]
                if name not in EVENT_NAMES:
                    continue
                keys += 1
                if name == "ALL":
                    conn.all_events = True
                conn.events.add(name)
                if name == "CUSTOM":
                    custom = True
        if not keys:
            return "-ERR no keywords supplied"
        conn.events_on = True
        return "+OK event listener enabled %s" % conn.fmt

    def _nixevent(self, conn: _Conn, line: str) -> str:
        space = line.find(" ", 5)
        keys = 0
        if space >= 0:
            custom = False
            for token in line[space + 1:].split(" "):
                if custom:
                    conn.custom.discard(token)
                    continue
                name = token.upper()
                if name not in EVENT_NAMES:
                    continue
                keys += 1
                if name == "CUSTOM":
                    custom = True
                elif name == "ALL":
                    conn.all_events = False
                    conn.events = set()
                else:
                    if conn.all_events:
                        conn.all_events = False
                        conn.events = set(EVENT_NAMES) - {"ALL"}
                    conn.events.discard(name)
        if not keys:
            return "-ERR no keywords supplied"
        conn.events_on = True
        return "+OK events nixed"

    def _filter(self, conn: _Conn, text: str) -> str:
        text = text.lstrip(" ")
        name, _, value = text.partition(" ")
        if name.lower() == "delete" and value:
            name, _, value = value.partition(" ")
            if name.lower() == "all":
                conn.filters = []
            else:
                conn.filters = [(n, v) for n, v in conn.filters
                                if not (n.lower() == name.lower() and (not value or v == value))]
            return "+OK filter deleted. [%s][%s]" % (name, value or "(null)")
        if value:
            if name.lower() == "add":
                name, _, value = value.partition(" ")
            conn.filters.append((name, value))
            return "+OK filter added. [%s]=[%s]" % (name, value)
        return "-ERR invalid syntax"

    def _api(self, conn: _Conn, text: str, cmd):
        name, arg = split_api(text)
        job = _Job("api", None, name, arg)
        result = self._run_api(conn, name, arg, job, cmd)
        if result is None:
            waiter = job.waiter
            conn.pending.add(waiter)
            try:
                result = waiter.get()
            finally:
                conn.pending.discard(waiter)
            if result is None:
                return
        self._send(conn, api_response(result))

    def _bgapi(self, conn: _Conn, text: str, cmd):
        job_uuid = (cmd.headers.get("job-uuid") or "")[:36] or str(uuidlib.uuid4())
        self._send(conn, ("Content-Type: command/reply\nReply-Text: +OK Job-UUID: %s\nJob-UUID: %s\n\n"
                          % (job_uuid, job_uuid)).encode("utf-8"))
        name, arg = split_api(text)
        job = _Job("bg", job_uuid, name, arg)
        result = self._run_api(conn, name, arg, job, cmd)
        if result is not None:
            self._finish_job(job, result)

    def _finish_job(self, job: Optional[_Job], text: str):
        if job is None:
            return
        if job.kind == "api":
            if not job.waiter.ready():
                job.waiter.set(text)
        else:
            self._emit("BACKGROUND_JOB", self._job_headers, job, text)

    def _run_api(self, conn: _Conn, name: str, arg: Optional[str], job: _Job, cmd) -> Optional[str]:
        lname = name.lower()
        if lname == "originate":
            return self._originate(conn, arg, job, cmd)
        if lname == "uuid_exists":
            return "true" if arg and arg in self._channels else "false"
        if lname == "uuid_kill":
            return self._uuid_kill(arg)
        if lname == "status":
            return self._status()
        if lname == "show":
            return self._show(arg)
        if lname == "hupall":
            argv = separate_string(arg or "", " ")
            cause = _cause_from_arg(argv[0] if argv else None, "MANAGER_REQUEST")
            self._hangup_all(cause)
            return "+OK hangup all channels with cause %s\n" % cause
        if lname == "version":
            return "FreeSWITCH Version %s (fsim)\n" % VERSION
        if lname == "hostname":
            return self.hostname
        return "-ERR %s Command not found!\n" % name

    def _uuid_kill(self, arg: Optional[str]) -> str:
        argv = separate_string(arg or "", " ")
        if not argv:
            return "-USAGE: <uuid> [cause]\n"
        ch = self._channels.get(argv[0])
        if ch is None:
            return "-ERR No such channel!\n"
        self._hangup(ch, _cause_from_arg(argv[1] if len(argv) > 1 else None, "NORMAL_CLEARING"))
        return "+OK\n"

    def _status(self) -> str:
        up = max(0.0, time.time() - self._started_at)
        secs = int(up)
        days, rem = divmod(secs, 86400)
        years, days = divmod(days, 365)
        hours, rem = divmod(rem, 3600)
        minutes, seconds = divmod(rem, 60)
        frac = int((up - secs) * 1_000_000)
        current = len(self._channels)
        sps_now = self._sps_count if time.monotonic() - self._sps_window < 1.0 else 0
        return ("UP %d years, %d days, %d hours, %d minutes, %d seconds, %d milliseconds, %d microseconds\n"
                "FreeSWITCH (Version %s) is ready\n"
                "%d session(s) since startup\n"
                "%d session(s) - peak %d, last 5min %d \n"
                "%d session(s) per Sec out of max %d, peak %d, last 5min %d \n"
                "%d session(s) max\n"
                "min idle cpu 0.00/100.00\n"
                "Current Stack Size/Max 240K/8192K\n"
                % (years, days, hours, minutes, seconds, frac // 1000, frac % 1000, VERSION,
                   self._sessions_total, current, self._peak, self._peak,
                   sps_now, self.sps if self.sps is not None else 30, self._sps_peak, self._sps_peak,
                   self.max_sessions if self.max_sessions is not None else 1000))

    def _show(self, arg: Optional[str]) -> str:
        argv = separate_string(arg or "", " ")
        if not argv or argv[0].lower() != "channels":
            return SHOW_USAGE
        channels = list(self._channels.values())
        if len(argv) > 1 and argv[1].lower() == "count":
            return "\n%d total.\n" % len(channels)
        if not channels:
            return "\n0 total.\n"
        rows = [SHOW_CHANNELS_HEADER]
        for ch in channels:
            rows.append(self._show_row(ch))
        return "\n".join(rows) + "\n\n%d total.\n" % len(channels)

    def _show_row(self, ch: _Channel) -> str:
        rec = ch.rec
        app, app_data = "", ""
        if rec.extension.startswith("&"):
            app, _, app_data = rec.extension[1:].partition("(")
            app_data = app_data[:-1] if app_data.endswith(")") else app_data
        answered = ch.answered_at is not None
        cid_name, cid_num = self._caller_id(rec)
        codec = ("PCMA", "8000", "64000") if answered else ("", "", "")
        fields = [
            ch.uuid, "outbound", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ch.created)),
            str(int(ch.created)), ch.name, "CS_CONSUME_MEDIA" if answered else "CS_EXECUTE",
            cid_name, cid_num, "", rec.number, app, app_data, rec.dialplan, rec.context,
            codec[0], codec[1], codec[2], codec[0], codec[1], codec[2], "", self.hostname, "", "",
            "", "ACTIVE" if answered else "RINGING", "Outbound Call", rec.number, "SEND", ch.uuid,
            "", "", cid_name, cid_num, "", rec.number, rec.dialplan, rec.context,
        ]
        return ",".join(fields)

    # --- originate -----------------------------------------------------------

    @staticmethod
    def _caller_id(rec: OriginateRecord) -> Tuple[str, str]:
        name = rec.variables.get("origination_caller_id_name") or rec.cid_name or "FreeSWITCH"
        num = rec.variables.get("origination_caller_id_number") or rec.cid_num or "0000000000"
        return name, num

    def _throttled(self) -> bool:
        if self.max_sessions is not None and len(self._channels) >= self.max_sessions:
            return True
        if self.sps is not None:
            now = time.monotonic()
            if now - self._sps_window >= 1.0:
                self._sps_window = now
                self._sps_count = 0
            if self._sps_count >= self.sps:
                return True
        self._sps_count += 1
        if self._sps_count > self._sps_peak:
            self._sps_peak = self._sps_count
        return False

    def _log_originate(self, rec: OriginateRecord):
        with self._lock:
            self._originates.append(rec)

    def _originate(self, conn: _Conn, arg: Optional[str], job: _Job, cmd) -> Optional[str]:
        now = time.time()
        rec = OriginateRecord(now, conn.id, job.job_uuid, "", {}, "", "", "", "", "", "", cmd.raw,
                              False, "", "", via="api" if job.kind == "api" else "bgapi")
        try:
            args = parse_originate(arg)
        except OriginateError as exc:
            rec.outcome_kind, rec.cause, rec.state = exc.kind, exc.cause, "failed"
            self._log_originate(rec)
            return exc.result
        dial = args.dial
        rec.variables = dial.variables
        rec.dialstring = args.dialstring
        rec.endpoint = dial.endpoint
        rec.number = dial.number
        rec.extension = args.extension
        rec.dialplan = args.dialplan
        rec.context = args.context
        rec.multi_destination = dial.multi_destination
        rec.cid_name = args.cid_name
        rec.cid_num = args.cid_num
        rec.timeout = args.timeout
        rec.uuid = dial.variables.get("origination_uuid") or str(uuidlib.uuid4())

        failure = None
        if not dial.endpoint:
            failure = ("invalid", "CHAN_NOT_IMPLEMENTED")
        elif self._throttled():
            failure = ("throttled", "DESTINATION_OUT_OF_ORDER")
        elif rec.uuid in self._channels:
            failure = ("duplicate_uuid", "DESTINATION_OUT_OF_ORDER")
        elif dial.gateway and self.gateways is not None and dial.endpoint not in self.gateways:
            failure = ("invalid_gateway", "INVALID_GATEWAY")
        if failure is not None:
            rec.outcome_kind, rec.cause, rec.state = failure[0], failure[1], "failed"
            self._log_originate(rec)
            return "-ERR %s\n" % failure[1]

        outcome = (self._num_scripts.get(dial.number) or self._gw_scripts.get(dial.endpoint)
                   or self.default_outcome)
        rec.outcome_kind = outcome.kind
        rec.cause = outcome.cause
        if not outcome.channel:
            rec.state = "failed"
            self._log_originate(rec)
            result = "-ERR %s\n" % outcome.cause
            if outcome.ring_ms <= 0:
                return result
            self._route_timers[job] = self._schedule(outcome.ring_ms, self._finish_route, job, result)
            return None

        rec.state = "ringing"
        name = dial.url if dial.url.startswith("sofia/") else "sofia/external/" + dial.number
        ch = _Channel(rec.uuid, rec, outcome, job, name, now)
        with self._lock:
            self._originates.append(rec)
            self._channels[rec.uuid] = ch
            count = len(self._channels)
            if count > self.max_concurrent:
                self.max_concurrent = count
        self._sessions_total += 1
        if count > self._peak:
            self._peak = count
        self._emit("CHANNEL_CREATE", self._channel_headers, ch)
        ch.timer = self._schedule(outcome.ring_ms, self._ring_done, ch)
        return None

    def _finish_route(self, job: _Job, result: str):
        self._route_timers.pop(job, None)
        self._finish_job(job, result)

    def _schedule(self, ms: int, fn: Callable, *args):
        if ms <= 0:
            return self._loop.run_callback(self._guarded, fn, args)
        timer = self._loop.timer(ms / 1000.0)
        timer.start(self._fire_timer, timer, fn, args)
        return timer

    def _fire_timer(self, timer, fn, args):
        timer.close()
        self._guarded(fn, args)

    @staticmethod
    def _guarded(fn, args):
        try:
            fn(*args)
        except Exception:
            log.exception("fsim timer callback failed")

    def _ring_done(self, ch: _Channel):
        ch.timer = None
        if self._channels.get(ch.uuid) is not ch:
            return
        outcome = ch.outcome
        if outcome.kind != "answer":
            self._hangup(ch, outcome.cause)
            return
        ch.answered_at = time.time()
        with self._lock:
            ch.rec.state = "answered"
            ch.rec.answered = True
        self._emit("CHANNEL_ANSWER", self._channel_headers, ch)
        job, ch.job = ch.job, None
        self._finish_job(job, "+OK %s\n" % ch.uuid)
        if outcome.hold_ms is not None and self._channels.get(ch.uuid) is ch:
            ch.timer = self._schedule(outcome.hold_ms, self._hangup, ch, "NORMAL_CLEARING",
                                      outcome.hold_ms // 1000)

    def _hangup(self, ch: _Channel, cause: str, billsec: Optional[int] = None):
        if self._channels.get(ch.uuid) is not ch:
            return
        if ch.timer is not None:
            ch.timer.close()
            ch.timer = None
        ch.ended_at = time.time()
        if billsec is None:
            billsec = int(ch.ended_at - ch.answered_at) if ch.answered_at is not None else 0
        ch.billsec = billsec
        ch.cause = cause
        with self._lock:
            del self._channels[ch.uuid]
            ch.rec.state = "hungup"
            ch.rec.cause = cause
            ch.rec.billsec = billsec
        self._emit("CHANNEL_HANGUP", self._channel_headers, ch)
        self._emit("CHANNEL_HANGUP_COMPLETE", self._channel_headers, ch)
        job, ch.job = ch.job, None
        self._finish_job(job, "-ERR %s\n" % cause)

    # --- events --------------------------------------------------------------

    def _emit(self, name: str, build: Callable, *args):
        self._seq += 1
        if self.silent:
            return
        targets = [c for c in self._conns.values()
                   if c.events_on and (c.all_events or name in c.events)]
        if not targets:
            return
        headers, body = build(name, self._seq, *args)
        plain = js = None
        for conn in targets:
            if conn.filters and not _filters_pass(conn.filters, headers):
                continue
            if conn.fmt == "json":
                if js is None:
                    js = event_json(headers, body)
                self._send(conn, js)
            else:
                if plain is None:
                    plain = event_plain(headers, body)
                self._send(conn, plain)

    def _dates(self, now: float) -> Tuple[str, str]:
        sec = int(now)
        cached = self._date_cache
        if cached[0] != sec:
            cached = (sec, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(sec)),
                      email.utils.formatdate(sec, usegmt=True))
            self._date_cache = cached
        return cached[1], cached[2]

    def _base_headers(self, name: str, seq: int) -> List[Tuple[str, str]]:
        now = time.time()
        local, gmt = self._dates(now)
        cfile, cfunc, cline = _CALLING.get(name, ("switch_event.c", "switch_event_fire", "1"))
        ipv4 = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return [
            ("Event-Name", name), ("Core-UUID", self._core_uuid),
            ("FreeSWITCH-Hostname", self.hostname), ("FreeSWITCH-Switchname", self.hostname),
            ("FreeSWITCH-IPv4", ipv4), ("FreeSWITCH-IPv6", "::1"),
            ("Event-Date-Local", local), ("Event-Date-GMT", gmt),
            ("Event-Date-Timestamp", str(int(now * 1_000_000))),
            ("Event-Calling-File", cfile), ("Event-Calling-Function", cfunc),
            ("Event-Calling-Line-Number", cline), ("Event-Sequence", str(seq)),
        ]

    def _job_headers(self, name, seq, job: _Job, text: str):
        headers = self._base_headers(name, seq)
        headers.append(("Job-UUID", job.job_uuid))
        headers.append(("Job-Command", job.command))
        if job.arg is not None:
            headers.append(("Job-Command-Arg", job.arg))
        return headers, text or "Command returned no output!"

    def _channel_headers(self, name, seq, ch: _Channel):
        rec = ch.rec
        headers = self._base_headers(name, seq)
        state, state_no, call_state, answer_state = _STATES[name]
        hangup = name in ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE")
        if hangup:
            headers.append(("Hangup-Cause", ch.cause))
        elif ch.answered_at is not None and name != "CHANNEL_ANSWER":
            answer_state = "answered"
        if ch.profile is None:
            cid_name, cid_num = self._caller_id(rec)
            created = _us(ch.created)
            ch.profile = [
                ("Caller-Direction", "outbound"), ("Caller-Logical-Direction", "outbound"),
                ("Caller-Dialplan", rec.dialplan),
                ("Caller-Caller-ID-Name", cid_name), ("Caller-Caller-ID-Number", cid_num),
                ("Caller-Orig-Caller-ID-Name", cid_name), ("Caller-Orig-Caller-ID-Number", cid_num),
                ("Caller-Callee-ID-Name", "Outbound Call"), ("Caller-Callee-ID-Number", rec.number),
                ("Caller-ANI", cid_num), ("Caller-Destination-Number", rec.number),
                ("Caller-Unique-ID", ch.uuid), ("Caller-Source", "src/switch_ivr_originate.c"),
                ("Caller-Context", rec.context), ("Caller-Channel-Name", ch.name),
                ("Caller-Profile-Index", "1"), ("Caller-Profile-Created-Time", created),
                ("Caller-Channel-Created-Time", created),
            ]
            builtin = {"direction": "outbound", "is_outbound": "true", "uuid": ch.uuid,
                       "call_uuid": ch.uuid, "channel_name": ch.name}
            if rec.endpoint and rec.dialstring and ch.name.startswith("sofia/gateway/"):
                builtin["sip_gateway_name"] = rec.endpoint
            merged = dict(builtin)
            for key, value in rec.variables.items():
                merged.setdefault(key, value)
            ch.variables = merged
        headers += [
            ("Channel-State", state), ("Channel-Call-State", call_state),
            ("Channel-State-Number", state_no), ("Channel-Name", ch.name),
            ("Unique-ID", ch.uuid), ("Call-Direction", "outbound"),
            ("Presence-Call-Direction", "outbound"), ("Channel-HIT-Dialplan", "false"),
            ("Channel-Call-UUID", ch.uuid), ("Answer-State", answer_state),
        ]
        headers += ch.profile
        headers += [
            ("Caller-Channel-Answered-Time", _us(ch.answered_at)),
            ("Caller-Channel-Progress-Time", "0"), ("Caller-Channel-Progress-Media-Time", "0"),
            ("Caller-Channel-Hangup-Time", _us(ch.ended_at if hangup else None)),
            ("Caller-Channel-Transfer-Time", "0"), ("Caller-Channel-Resurrect-Time", "0"),
            ("Caller-Channel-Bridged-Time", "0"), ("Caller-Channel-Last-Hold", "0"),
            ("Caller-Channel-Hold-Accum", "0"), ("Caller-Screen-Bit", "true"),
            ("Caller-Privacy-Hide-Name", "false"), ("Caller-Privacy-Hide-Number", "false"),
        ]
        variables = ch.variables
        if ch.answered_at is not None or hangup:
            variables = dict(variables)
            if ch.answered_at is not None:
                variables["endpoint_disposition"] = "ANSWER"
            if hangup:
                variables["hangup_cause"] = ch.cause
                variables["hangup_cause_q850"] = str(Q850.get(ch.cause, 31))
            if name == "CHANNEL_HANGUP_COMPLETE":
                variables.update(self._timing_variables(ch))
        headers += [("variable_" + k, v) for k, v in variables.items()]
        return headers, None

    @staticmethod
    def _timing_variables(ch: _Channel) -> Dict[str, str]:
        start, answer, end = ch.created, ch.answered_at, ch.ended_at or time.time()
        duration = end - start
        answersec = (answer - start) if answer is not None else 0.0
        billsec = ch.billsec
        billms = billsec * 1000 if answer is not None else 0
        fmt = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))  # noqa: E731
        out = {"start_stamp": fmt(start)}
        if answer is not None:
            out["answer_stamp"] = fmt(answer)
        out.update({
            "end_stamp": fmt(end),
            "start_epoch": str(int(start)), "start_uepoch": _us(start),
            "answer_epoch": str(int(answer)) if answer is not None else "0",
            "answer_uepoch": _us(answer),
            "end_epoch": str(int(end)), "end_uepoch": _us(end),
            "duration": str(int(duration)), "mduration": str(int(duration * 1000)),
            "billsec": str(billsec), "billmsec": str(billms),
            "progresssec": "0", "progressmsec": "0",
            "answersec": str(int(answersec)), "answermsec": str(int(answersec * 1000)),
            "waitsec": str(int(answersec)), "waitmsec": str(int(answersec * 1000)),
            "flow_billsec": str(int(duration)), "flow_billmsec": str(int(duration * 1000)),
        })
        return out
