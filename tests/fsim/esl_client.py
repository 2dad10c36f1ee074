"""A minimal blocking event-socket client for the simulator tests.

It reads frames exactly as they come off the wire (no greenswitch in the
way), so tests can assert on bytes, and it keeps events that arrive while it
waits for a reply so none are lost.
"""
import socket
import time
import uuid as uuidlib
from collections import deque
from typing import Callable, Deque, Dict, List, Optional, Tuple, Union
from urllib.parse import unquote


class Frame:
    """One frame: outer headers, raw body bytes, and for events the parsed event."""

    __slots__ = ("headers", "body", "raw", "event", "event_body")

    def __init__(self, headers: Dict[str, str], body: bytes, raw: bytes):
        self.headers = headers
        self.body = body
        self.raw = raw
        self.event: Optional[Dict[str, str]] = None
        self.event_body = ""
        if headers.get("Content-Type") == "text/event-plain":
            self.event, self.event_body = parse_event_plain(body)

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def reply_text(self) -> str:
        return self.headers.get("Reply-Text", "")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    @property
    def event_name(self) -> Optional[str]:
        return self.event.get("Event-Name") if self.event else None

    def __repr__(self):
        return "Frame(%r, %r)" % (self.headers, self.body[:200])


def parse_event_plain(body: bytes) -> Tuple[Dict[str, str], str]:
    """Headers (URL-decoded, first occurrence wins) and the trailing body of an event."""
    text = body.decode("utf-8")
    head, sep, rest = text.partition("\n\n")
    headers: Dict[str, str] = {}
    for line in head.split("\n"):
        name, colon, value = line.partition(": ")
        if colon and name not in headers:
            headers[name] = unquote(value)
    event_body = ""
    if sep and "Content-Length" in headers:
        event_body = rest.encode("utf-8")[:int(headers["Content-Length"])].decode("utf-8")
    return headers, event_body


def take_frame(buf: bytearray) -> Optional[Frame]:
    """Cut the first complete frame off ``buf``; None (and ``buf`` untouched) if it is incomplete."""
    end = buf.find(b"\n\n")
    if end < 0:
        return None
    headers: Dict[str, str] = {}
    for line in bytes(buf[:end]).decode("utf-8").split("\n"):
        name, _, value = line.partition(": ")
        headers[name] = value
    size = end + 2 + int(headers.get("Content-Length", "0") or 0)
    if len(buf) < size:
        return None
    raw = bytes(buf[:size])
    del buf[:size]
    return Frame(headers, raw[end + 2:], raw)


class EslTestClient:
    def __init__(self, host: str, port: int, timeout: float = 5.0):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._buf = bytearray()
        self.events: Deque[Frame] = deque()   # events seen while waiting for replies
        self._replies: Deque[Frame] = deque()  # replies seen while waiting for events
        self.greeting = self.read_frame()

    # --- raw I/O ---------------------------------------------------------------

    def send_raw(self, data: Union[bytes, str]):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def _fill(self, deadline: float):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("no data before the deadline")
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed by the server")
        self._buf += data

    def read_frame(self, timeout: Optional[float] = None) -> Frame:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            frame = take_frame(self._buf)
            if frame is not None:
                return frame
            self._fill(deadline)

    def read_until_closed(self, timeout: Optional[float] = None) -> bytes:
        """Everything left until the server closes the connection."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                self._fill(deadline)
            except ConnectionError:
                data = bytes(self._buf)
                self._buf.clear()
                return data

    # --- commands --------------------------------------------------------------

    def reply(self, timeout: Optional[float] = None) -> Frame:
        """The next frame that is not an event (events are queued)."""
        if self._replies:
            return self._replies.popleft()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            frame = self.read_frame(max(0.0, deadline - time.monotonic()))
            if frame.content_type.startswith("text/event-"):
                self.events.append(frame)
                continue
            return frame

    def command(self, text: str, timeout: Optional[float] = None) -> Frame:
        self.send_raw(text + "\n\n")
        return self.reply(timeout)

    def auth(self, password: str = "ClueCon") -> Frame:
        return self.command("auth " + password)

    def subscribe(self, *names: str) -> Frame:
        return self.command("event plain " + " ".join(names or ("ALL",)))

    def api(self, text: str, timeout: Optional[float] = None) -> str:
        return self.command("api " + text, timeout).text

    def bgapi(self, text: str, job_uuid: Optional[str] = None, timeout: Optional[float] = None) -> str:
        job_uuid = job_uuid or str(uuidlib.uuid4())
        frame = self.command("bgapi %s\nJob-UUID: %s" % (text, job_uuid), timeout)
        if frame.reply_text != "+OK Job-UUID: " + job_uuid:
            raise AssertionError("unexpected bgapi reply %r" % (frame,))
        return job_uuid

    # --- events ----------------------------------------------------------------

    def wait_event(self, match: Union[str, Callable[[Frame], bool]],
                   timeout: Optional[float] = None) -> Frame:
        """The first (queued or new) event matching a name or predicate; earlier ones stay queued."""
        pred = (lambda f: f.event_name == match) if isinstance(match, str) else match
        for frame in list(self.events):
            if pred(frame):
                self.events.remove(frame)
                return frame
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            frame = self.read_frame(max(0.0, deadline - time.monotonic()))
            if not frame.content_type.startswith("text/event-"):
                self._replies.append(frame)
            elif pred(frame):
                return frame
            else:
                self.events.append(frame)

    def wait_job(self, job_uuid: str, timeout: Optional[float] = None) -> Frame:
        return self.wait_event(lambda f: f.event_name == "BACKGROUND_JOB"
                               and f.event.get("Job-UUID") == job_uuid, timeout)

    def drain_events(self) -> List[Frame]:
        out = list(self.events)
        self.events.clear()
        return out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
