"""The simulator against a capture of the real switch: the same client session, the same answers.

06_real_flow.txt is a session recorded against FreeSWITCH 1.11: three
originates over ``loopback/`` and ``error/`` (answered, busy, failed before a
channel), a few other commands, then ``exit``. The test sends the captured
commands to the simulator, scripted like that switch's dialplan, and compares
what comes back: the replies in order, the events in order (a failed call's
job result may come before or after its hangup events, on both sides), and
for every event its header names in order and every value that is not
legitimately different (uuids, times, host names, sequence numbers).
"""
import re
import socket
import time
from typing import List, Tuple

import pytest

from cti_dialer.fsim import FreeSwitchSimulator, Outcome

from tests.fsim.capture import Item, capture_path, event_headers, read_items
from tests.fsim.esl_client import Frame, take_frame

pytestmark = pytest.mark.fsim

# Variables only the real switch's dialplan sets (the applications its
# extensions ran); the simulator runs no dialplan.
DIALPLAN_VARIABLES = {"variable_current_application", "variable_current_application_data",
                      "variable_last_app", "variable_last_arg"}

# Values that differ between any two runs of a switch.
RUN_VALUES = {"Core-UUID", "FreeSWITCH-Hostname", "FreeSWITCH-Switchname", "Event-Sequence",
              "variable_session_id", "Content-Length"}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_MICROS = re.compile(r"\b1\d{15}\b")
_EPOCH = re.compile(r"\b1\d{9}\b")
_LOCAL = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_GMT = re.compile(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT")
# How long a call lasted depends on when the test's commands ran.
_SPAN = re.compile(r"variable_(m|u)?duration|variable_\w+?(sec|msec|usec)")


def normalize(name: str, value: str) -> str:
    if name in RUN_VALUES:
        return "<run>"
    if _SPAN.fullmatch(name):
        return "<span>"
    value = _UUID.sub("<uuid>", value)
    value = _MICROS.sub("<us>", value)
    value = _EPOCH.sub("<s>", value)
    value = _GMT.sub("<gmt>", value)
    return _LOCAL.sub("<local>", value)


def normalize_body(text: str) -> str:
    text = _UUID.sub("<uuid>", text)
    if text.startswith("UP "):
        # status: the figures are this run's own; the words and layout are compared.
        text = re.sub(r"Version [^)]*\)", "Version <v>)", text)
        text = re.sub(r"\d+(\.\d+)?", "<n>", text)
        text = re.sub(r"(year|day|hour|minute|second|millisecond|microsecond)s?\b", r"\1(s)", text)
    return text


def replay(port: int, items: List[Item], scale: float = 1.0) -> List[Frame]:
    """Send the captured commands with the captured pauses; every frame that comes back, in order."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    buf = bytearray()
    frames: List[Frame] = []
    started = time.monotonic()
    try:
        for item in items:
            if item.kind != "sent":
                continue
            pause = started + item.t * scale - time.monotonic()
            deadline = time.monotonic() + max(0.0, pause)
            while True:                       # take what arrives while waiting
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                try:
                    data = sock.recv(65536)
                except socket.timeout:
                    data = None
                if data:
                    buf += data
                if time.monotonic() >= deadline:
                    break
            sock.sendall(item.command.encode("utf-8") + b"\n\n")
        sock.settimeout(5)
        while True:
            data = sock.recv(65536)
            if not data:
                break
            buf += data
    finally:
        sock.close()
    while True:
        frame = take_frame(buf)
        if frame is None:
            break
        frames.append(frame)
    assert not buf, "an unfinished frame at the end"
    return frames


def leg(frame: Frame) -> str:
    name = frame.event.get("Channel-Name", "")
    return name[-2:] if name[-2:] in ("-a", "-b") else ""


def replies(frames: List[Frame]) -> List[Tuple[str, str]]:
    out = []
    for f in frames:
        if f.event is not None:
            continue
        text = f.reply_text if f.content_type == "command/reply" else f.text
        out.append((f.content_type, normalize_body(text)))
    return out


def events(frames: List[Frame]) -> List[Frame]:
    """Events in order, each job result put before its own call's hangup events when they touch.

    The real switch sends a failed call's BACKGROUND_JOB and its
    CHANNEL_HANGUP_COMPLETE events in either order, and so does the
    simulator; the session uses each call's uuid as its Job-UUID too.
    """
    out: List[Frame] = []
    for f in (f for f in frames if f.event is not None):
        if f.event_name == "BACKGROUND_JOB":
            call = f.event.get("Job-UUID")
            at = len(out)
            while at and out[at - 1].event_name == "CHANNEL_HANGUP_COMPLETE" and call in (
                    out[at - 1].event.get("Unique-ID"), out[at - 1].event.get("variable_other_loopback_leg_uuid")):
                at -= 1
            out.insert(at, f)
        else:
            out.append(f)
    return out


def described(frame: Frame) -> Tuple[str, str, str]:
    return frame.event_name, leg(frame), normalize_body(frame.event_body)


@pytest.fixture(scope="module")
def session():
    items = read_items(capture_path("06_real_flow.txt"))
    real = [i.frame for i in items if i.kind == "frame"]
    sim = FreeSwitchSimulator()
    sim.start_in_thread()
    try:
        # The captured switch's dialplan: 1000 answers and hangs up a second
        # later, 2000 is busy; error/GATEWAY_DOWN fails by itself.
        sim.script_number("1000", Outcome.answer(hold_ms=1000))
        sim.script_number("2000", Outcome.busy())
        ours = replay(sim.port, items)
    finally:
        sim.stop_thread()
    return real, ours


def test_the_capture_is_read_whole(session):
    real, _ = session
    assert [f.content_type for f in real[:3]] == ["auth/request", "command/reply", "command/reply"]
    assert real[-1].content_type == "text/disconnect-notice"


def test_replies_match(session):
    real, ours = session
    assert replies(ours) == replies(real)


def test_events_come_in_the_same_order(session):
    real, ours = session
    assert [described(f) for f in events(ours)] == [described(f) for f in events(real)]


def test_event_headers_match(session):
    real, ours = session
    for r, o in zip(events(real), events(ours)):
        want = [(n, normalize(n, v)) for n, v in event_headers(r) if n not in DIALPLAN_VARIABLES]
        got = [(n, normalize(n, v)) for n, v in event_headers(o)]
        assert got == want, described(r)
