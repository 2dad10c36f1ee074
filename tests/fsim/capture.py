"""Reading the wire captures of a real FreeSWITCH (shared/freeswitch-captures).

A capture is a run of records, each ``<<< recv t=T len=N`` (switch to
client), ``>>> sent t=T len=N`` (client to switch) or ``<<< EOF``, a newline,
exactly N bytes, a newline unless those end with one, then ``---``. A recv
record holds whatever one read returned, so frames are rebuilt from the
joined bytes, not per record.
"""
import os
import re
from typing import Iterator, List, NamedTuple, Optional, Tuple
from urllib.parse import unquote

from tests.fsim.esl_client import Frame, take_frame

# Copies of the captures the tests compare against (from shared/freeswitch-captures),
# kept here so the comparison never silently goes away with the shared folder.
CAPTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "captures")

_RECORD = re.compile(rb"(<<< recv|>>> sent|<<< EOF) t=([0-9.]+) len=([0-9]+)\n")
_SEPARATOR = b"---\n"


class Record(NamedTuple):
    kind: str          # "recv", "sent" or "eof"
    t: float
    data: bytes


class Item(NamedTuple):
    """One thing on the wire, in order: a command sent, a frame received, or the close."""
    kind: str          # "sent", "frame" or "eof"
    t: float
    command: str = ""
    frame: Optional[Frame] = None


def capture_path(name: str) -> str:
    return os.path.join(CAPTURES, name)


def read_records(path: str) -> List[Record]:
    with open(path, "rb") as fh:
        raw = fh.read()
    out: List[Record] = []
    pos = 0
    while pos < len(raw):
        m = _RECORD.match(raw, pos)
        if m is None:
            raise ValueError("%s: no record header at byte %d" % (path, pos))
        size = int(m.group(3))
        data = raw[m.end():m.end() + size]
        separator = _SEPARATOR if data.endswith(b"\n") else b"\n" + _SEPARATOR
        end = m.end() + size + len(separator)
        if len(data) != size or raw[m.end() + size:end] != separator:
            raise ValueError("%s: record at byte %d is not %d bytes long" % (path, pos, size))
        kind = {b"<<< recv": "recv", b">>> sent": "sent", b"<<< EOF": "eof"}[m.group(1)]
        out.append(Record(kind, float(m.group(2)), data))
        pos = end
    return out


def read_items(path: str) -> List[Item]:
    items: List[Item] = []
    buf = bytearray()
    for rec in read_records(path):
        if rec.kind == "sent":
            items.extend(Item("sent", rec.t, command=c) for c in split_commands(rec.data))
        elif rec.kind == "recv":
            buf += rec.data
            while True:
                frame = take_frame(buf)
                if frame is None:
                    break
                items.append(Item("frame", rec.t, frame=frame))
        else:
            items.append(Item("eof", rec.t))
    if buf:
        raise ValueError("%s: %d bytes of an unfinished frame" % (path, len(buf)))
    return items


def split_commands(data: bytes) -> Iterator[str]:
    """The commands in one write; the simulator's own reader is not used, so it is tested too."""
    for chunk in data.decode("utf-8").split("\n\n"):
        chunk = chunk.strip("\n")
        if chunk:
            yield chunk


def event_headers(frame: Frame) -> List[Tuple[str, str]]:
    """Every header of a plain event in order, duplicates kept, values URL-decoded."""
    head = frame.body.decode("utf-8").partition("\n\n")[0]
    out = []
    for line in head.split("\n"):
        name, colon, value = line.partition(": ")
        if colon:
            out.append((name, unquote(value)))
    return out
