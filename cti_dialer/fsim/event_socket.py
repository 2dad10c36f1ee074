"""The inbound event socket: client connections, their commands, and events to them.

Each client has an output queue drained by its own writer greenlet, so a
client that does not read never blocks the switch or the other clients;
FreeSWITCH's own listener drops such a client, and so does this one.
"""
import itertools
import logging
import socket
import time
import uuid as uuidlib
from collections import deque
from typing import Callable, Deque, Dict, List, NamedTuple, Optional, Tuple, Union

import gevent
import gevent.event

from .api import ApiCommands
from .originate import split_api
from .switch import Job, Switch
from .wire import (AUTH_REQUEST, DISCONNECT_NOTICE, Command, CommandReader, api_response, bgapi_reply,
                   command_reply, event_json, event_plain)

log = logging.getLogger("cti_dialer.fsim")

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

_LOG_LEVELS = {"console": 0, "alert": 1, "crit": 2, "err": 3, "error": 3, "warning": 4,
               "notice": 5, "info": 6, "debug": 7}

# FreeSWITCH's own listener gives up on a client this far behind.
_MAX_PENDING_WRITES = 100000


class CommandRecord(NamedTuple):
    ts: float
    conn_id: int
    raw: str


class Connection:
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
        self.pending = set()     # api callers' waiters, released if the connection goes
        self.log_level = None


def _event_keywords(line: str) -> List[str]:
    """The words after ``event``/``nixevent``, split on single blanks as FreeSWITCH does."""
    space = line.find(" ", 5)
    return line[space + 1:].split(" ") if space >= 0 else []


def _filters_pass(filters, headers) -> bool:
    for name, value in filters:
        lname = name.lower()
        for hname, hval in headers:
            if hname.lower() == lname and hval.lower() == value.lower():
                return True
    return False


class Connections:
    """Every client connection's output: queued writes, closing, and event fan-out.

    ``silent`` stops all output (events are still counted), to play a
    switch that hangs without closing its sockets.
    """

    def __init__(self):
        self.silent = False
        self._open: Dict[int, Connection] = {}    # still taking commands and events
        self._live: Dict[int, Connection] = {}    # until the writer has flushed and closed
        self._ids = itertools.count(1)
        self._seq = 0

    def __len__(self) -> int:
        return len(self._open)

    def add(self, sock, peer) -> Connection:
        conn = Connection(next(self._ids), sock, peer)
        self._open[conn.id] = conn
        self._live[conn.id] = conn
        conn.writer = gevent.spawn(self._writer, conn)
        return conn

    def _writer(self, conn: Connection):
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
            self._open.pop(conn.id, None)
            self._live.pop(conn.id, None)
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
            for waiter in list(conn.pending):
                waiter.set(None)

    def send(self, conn: Connection, data: bytes):
        if conn.closing or self.silent:
            return
        conn.out.append(data)
        if len(conn.out) > _MAX_PENDING_WRITES:
            log.warning("fsim connection %s is not reading; dropping it", conn.id)
            conn.out = []
            self.close(conn, notice=False)
            return
        if not conn.wake.is_set():
            conn.wake.set()

    def close(self, conn: Connection, notice: Union[bool, bytes]):
        """Stop taking commands; the writer flushes what is queued, then closes the socket.

        ``notice`` True sends the usual disconnect notice; bytes send that one.
        """
        if conn.closing:
            return
        if notice:
            self.send(conn, DISCONNECT_NOTICE if notice is True else notice)
        conn.closing = True
        self._open.pop(conn.id, None)
        for waiter in list(conn.pending):
            waiter.set(None)
        if conn.sending and conn.writer is not None:
            # Stuck writing to a client that does not read: cut it off.
            conn.writer.kill(block=False)
        conn.wake.set()

    def close_all(self, notice: Union[bool, bytes]):
        for conn in list(self._open.values()):
            self.close(conn, notice)

    def wait_writers(self):
        """Give closed connections' writers a moment to flush, then kill the rest."""
        writers = [c.writer for c in list(self._live.values()) if c.writer is not None]
        if writers:
            gevent.joinall(writers, timeout=2)
            gevent.killall([w for w in writers if not w.dead], block=True, timeout=1)

    def emit(self, name: str, build: Callable, *args, subclass: Optional[str] = None):
        """Send event ``name`` to every listener; ``build(name, seq, *args)`` renders it once.

        A CUSTOM event with a ``subclass`` goes, as mod_event_socket decides it,
        to listeners of ALL and to listeners of CUSTOM that named that subclass;
        ``event plain CUSTOM`` alone gets only CUSTOM events without one.
        """
        self._seq += 1
        if self.silent:
            return
        if subclass is None:
            targets = [c for c in self._open.values()
                       if c.events_on and (c.all_events or name in c.events)]
        else:
            targets = [c for c in self._open.values()
                       if c.events_on and (c.all_events or (name in c.events and subclass in c.custom))]
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
                self.send(conn, js)
            else:
                if plain is None:
                    plain = event_plain(headers, body)
                self.send(conn, plain)


class EventSocket:
    """Reads each client's commands and answers them, as mod_event_socket does.

    ``serve`` is the listening server's handler, one greenlet per client.
    """

    def __init__(self, connections: Connections, switch: Switch, api: ApiCommands,
                 password: str, lock, log_limit: Optional[int]):
        self._connections = connections
        self._switch = switch
        self._api = api
        self.password = password
        # Commands the client's permissions do not allow (mod_event_socket's
        # allowed-api list, an ACL mistake): each is answered
        # "-ERR permission denied" and never run.
        self.denied_commands = frozenset()
        self._lock = lock
        self.command_log: Deque[CommandRecord] = deque(maxlen=log_limit)

    def serve(self, sock, address):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        connections = self._connections
        conn = connections.add(sock, address)
        connections.send(conn, AUTH_REQUEST)
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
            connections.close(conn, notice=False)
            # The server closes the socket once this returns; let the writer
            # deliver what is queued (a reply to exit, a notice) first.
            if conn.writer is not None and conn.writer is not gevent.getcurrent():
                conn.writer.join(timeout=3)

    def _reply(self, conn: Connection, text: str):
        self._connections.send(conn, command_reply(text))

    def _process(self, conn: Connection, cmd: Command):
        line = cmd.line
        low = line[:9].lower()
        raw = cmd.raw
        if low.startswith("auth ") or low.startswith("userauth "):
            raw = line.split(" ", 1)[0] + " ****"
        with self._lock:
            self.command_log.append(CommandRecord(time.time(), conn.id, raw))
        if low.startswith("exit") or low.startswith("..."):
            self._reply(conn, "+OK bye")
            self._connections.close(conn, notice=True)
            return
        if not conn.authed:
            if low.startswith("auth "):
                if line[5:] == self.password:
                    conn.authed = True
                    self._reply(conn, "+OK accepted")
                else:
                    self._reply(conn, "-ERR invalid")
                    self._connections.close(conn, notice=True)
            elif low.startswith("userauth "):
                self._reply(conn, "-ERR invalid")
                self._connections.close(conn, notice=True)
            else:
                self._reply(conn, "-ERR command not found")
            return
        if low.startswith("api "):
            self._api_command(conn, line[4:], cmd)
            return
        if low.startswith("bgapi "):
            self._bgapi_command(conn, line[6:], cmd)
            return
        self._reply(conn, self._control(conn, line, low))

    # --- api and bgapi -------------------------------------------------------

    def _api_command(self, conn: Connection, text: str, cmd: Command):
        name, arg = split_api(text)
        job = Job("api", None, name, arg)
        result = self._api.run(job, conn.id, cmd.raw)
        if result is None:
            waiter = job.waiter
            conn.pending.add(waiter)
            try:
                result = waiter.get()
            finally:
                conn.pending.discard(waiter)
            if result is None:
                return
        self._connections.send(conn, api_response(result))

    def _bgapi_command(self, conn: Connection, text: str, cmd: Command):
        job_uuid = (cmd.headers.get("job-uuid") or "")[:36] or str(uuidlib.uuid4())
        name, arg = split_api(text)
        if name in self.denied_commands:
            self._connections.send(conn, command_reply("-ERR permission denied"))
            return
        self._connections.send(conn, bgapi_reply(job_uuid))
        job = Job("bg", job_uuid, name, arg)
        result = self._api.run(job, conn.id, cmd.raw)
        if result is not None:
            self._switch.finish_job(job, result)

    # --- everything else -----------------------------------------------------

    def _control(self, conn: Connection, line: str, low: str) -> str:
        if low.startswith("filter "):
            return self._filter(conn, line[7:])
        if low.startswith("divert_ev"):
            return "-ERR not controlling a session."
        if low.startswith("sendmsg"):
            target = line[7:].strip() or None
            if target and target in self._switch.channels:
                return "+OK"
            return "-ERR invalid session id [%s]" % (target or "(null)")
        if low.startswith("sendevent"):
            return "+OK %s" % uuidlib.uuid4()
        if low.startswith("log"):
            level = line[4:].strip() if len(line) > 3 else ""
            digits = len(level) - len(level.lstrip("0123456789"))
            if not level:
                value = 7
            elif digits:
                # A number is taken as it is, with no upper bound (captured: "log 9").
                value = int(level[:digits])
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
            return self._event(conn, line)
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

    @staticmethod
    def _event(conn: Connection, line: str) -> str:
        keys = 0
        custom = False
        for i, token in enumerate(_event_keywords(line)):
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

    @staticmethod
    def _nixevent(conn: Connection, line: str) -> str:
        keys = 0
        custom = False
        for token in _event_keywords(line):
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

    @staticmethod
    def _filter(conn: Connection, text: str) -> str:
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
