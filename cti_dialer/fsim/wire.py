"""Byte-level pieces of the event socket protocol."""
import json
import re
from typing import Dict, List, Optional, Sequence, Tuple

AUTH_REQUEST = b"Content-Type: auth/request\n\n"
DISCONNECT_TEXT = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"


def disconnect_notice(text: bytes) -> bytes:
    return b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n" % len(text) + text


DISCONNECT_NOTICE = disconnect_notice(DISCONNECT_TEXT)
# What every client gets when the switch itself stops (captured byte for byte).
SHUTDOWN_NOTICE = disconnect_notice(b"The system is being shut down.\n")

# FreeSWITCH never reads a command longer than this (read_packet's max_len);
# at that size it stops and treats what it has as the command.
MAX_COMMAND_BYTES = 10 * 1024 * 1024

_URL_UNSAFE = "\r\n #%&+:;<=>?@[\\]^`{|}\""
# Applied to the UTF-8 bytes seen as latin-1 text, so one table covers control
# characters, DEL and every byte of a multi-byte character.
_ENCODE_TABLE = {c: "%%%02X" % c for c in range(256)
                 if c < 0x20 or c > 0x7E or chr(c) in _URL_UNSAFE}
_ENCODE_TABLE_KEEP_PERCENT = {c: v for c, v in _ENCODE_TABLE.items() if c != 0x25}
# Anything outside printable ASCII, or one of the unsafe characters.
_NEEDS_ENCODING = re.compile(r'[^!$\'()*,\-./0-9A-Z_a-z~]')
# A '%' not already starting an upper-case %XX escape.
_LONE_PERCENT = re.compile(r"%(?![0-9A-F]{2})")
_TERMINATOR = re.compile(rb"\n\r*\n")
_cache: Dict[str, str] = {}


def url_encode(value: str) -> str:
    """switch_url_encode: %XX for unsafe bytes, an existing %XX (upper-case hex) is kept."""
    if not _NEEDS_ENCODING.search(value):
        return value
    hit = _cache.get(value)
    if hit is not None:
        return hit
    text = value if value.isascii() else value.encode("utf-8", "surrogatepass").decode("latin-1")
    if "%" in text:
        encoded = _LONE_PERCENT.sub("%25", text).translate(_ENCODE_TABLE_KEEP_PERCENT)
    else:
        encoded = text.translate(_ENCODE_TABLE)
    if len(_cache) >= 8192:
        _cache.clear()
    _cache[value] = encoded
    return encoded


def command_reply(text: str) -> bytes:
    return ("Content-Type: command/reply\nReply-Text: %s\n\n" % text).encode("utf-8")


def bgapi_reply(job_uuid: str) -> bytes:
    return ("Content-Type: command/reply\nReply-Text: +OK Job-UUID: %s\nJob-UUID: %s\n\n"
            % (job_uuid, job_uuid)).encode("utf-8")


def api_response(body: str) -> bytes:
    data = body.encode("utf-8")
    if not data:
        data = b"-ERR no reply\n"
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(data) + data


def event_plain(headers: Sequence[Tuple[str, str]], body: Optional[str] = None) -> bytes:
    """One text/event-plain frame: encoded headers, then the optional body."""
    enc = url_encode
    parts = [name + ": " + (enc(value) if value else "_undef_") + "\n" for name, value in headers]
    if body:
        raw_body = body.encode("utf-8")
        parts.append("Content-Length: %d\n\n" % len(raw_body))
        payload = "".join(parts).encode("utf-8") + raw_body
    else:
        parts.append("\n")
        payload = "".join(parts).encode("utf-8")
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(payload) + payload


def event_json(headers: Sequence[Tuple[str, str]], body: Optional[str] = None) -> bytes:
    obj: Dict[str, str] = {}
    for name, value in headers:
        obj[name] = value
    if body:
        obj["Content-Length"] = str(len(body.encode("utf-8")))
        obj["_body"] = body
    payload = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(payload) + payload


class Command:
    """One command as read from the socket."""

    __slots__ = ("line", "headers", "body", "raw")

    def __init__(self, line: str, headers: Dict[str, str], body: str, raw: str):
        self.line = line          # first line, what FreeSWITCH calls the command
        self.headers = headers    # lower-cased names
        self.body = body
        self.raw = raw            # all lines as received, without the blank line


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "replace")


class CommandReader:
    """Cuts a byte stream into commands the way read_packet does.

    Leading CR/LF bytes are skipped, a command ends at a line feed followed by
    an empty line (CRs in between are ignored), and a ``Content-Length``
    header makes the next N bytes its body.
    """

    def __init__(self, max_bytes: int = MAX_COMMAND_BYTES):
        self._buf = bytearray()
        self._max = max_bytes
        self._pending: Optional[Tuple[str, Dict[str, str], str, int]] = None

    def feed(self, data: bytes) -> List[Command]:
        self._buf += data
        out: List[Command] = []
        buf = self._buf
        while True:
            if self._pending is not None:
                line, headers, raw, clen = self._pending
                if len(buf) < clen:
                    break
                body = _decode(bytes(buf[:clen]))
                del buf[:clen]
                self._pending = None
                out.append(Command(line, headers, body, raw + "\n\n" + body))
                continue
            skip = 0
            while skip < len(buf) and buf[skip] in (0x0A, 0x0D):
                skip += 1
            if skip:
                del buf[:skip]
            if not buf:
                break
            m = _TERMINATOR.search(buf)
            if m is None:
                if len(buf) >= self._max:
                    head = bytes(buf)
                    del buf[:]
                    out.append(self._parse(head, allow_body=False)[0])
                break
            head = bytes(buf[:m.start()])
            del buf[:m.end()]
            cmd, clen = self._parse(head, allow_body=True)
            if clen > 0:
                self._pending = (cmd.line, cmd.headers, cmd.raw, clen)
                continue
            out.append(cmd)
        return out

    def _parse(self, head: bytes, allow_body: bool) -> Tuple[Command, int]:
        text = _decode(head)
        lines = text.split("\n")
        line = lines[0].split("\r", 1)[0]
        headers: Dict[str, str] = {}
        clen = 0
        for extra in lines[1:]:
            extra = extra.replace("\r", "")
            if not extra:
                continue
            name, colon, value = extra.partition(":")
            if not colon:
                continue
            value = value.lstrip(" ")
            headers[name.lower()] = value
            if allow_body and name.lower() == "content-length":
                clen = _atoi(value)
        raw = "\n".join(l.rstrip("\r") for l in lines)
        return Command(line, headers, "", raw), min(max(clen, 0), self._max)


def _atoi(text: str) -> int:
    n = 0
    for c in text.strip():
        if not "0" <= c <= "9":
            break
        n = n * 10 + (ord(c) - 48)
        if n > MAX_COMMAND_BYTES:
            break
    return n
