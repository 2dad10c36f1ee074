"""Parsing of ``originate`` arguments the way FreeSWITCH splits them.

Two layers matter to a dialer: the argument list (split on blanks, single
quotes group, backslash escapes) and the dial string (``{global}`` and
``[per-leg]`` variable blocks, then one or more destinations). Both follow
switch_separate_string / switch_find_end_paren closely enough that a command
FreeSWITCH would read one way is read the same way here, including the two
traps a dialer must avoid: ``:_:`` anywhere in the dial string, and variable
values holding ``${``.
"""
import dataclasses
import re
from typing import Dict, List, Optional, Tuple

ORIGINATE_USAGE = ("-USAGE: <call url> <exten>|&<application_name>(<app_args>) "
                   "[<dialplan>] [<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]\n")

_UNESCAPES = {"n": "\n", "r": "\r", "t": "\t", "s": " "}


class OriginateError(Exception):
    """The command cannot be run; ``result`` is the text FreeSWITCH answers with."""

    def __init__(self, result: str, kind: str, cause: str = ""):
        super().__init__(result.strip())
        self.result = result
        self.kind = kind
        self.cause = cause


_CLEANUP_SCAN = re.compile(r"\\.?|'", re.S)
_QUOTES_AND_BACKSLASH = "'\"\\"


def cleanup_token(token: str, delim: str) -> str:
    """Drop unescaped quote pairs, resolve escapes, trim blanks at both ends.

    ``delim`` " " stands for the blank splitter, which passes no delimiter
    (0) to cleanup_separated_string(): ``\\ `` is then no escape and keeps
    its backslash.
    """
    if delim == " ":
        delim = ""
    if "\\" not in token and "'" not in token:
        return token.strip(" ")
    token = token.lstrip(" ")
    out: List[str] = []
    length = 0
    end = 0          # how much of out survives: trailing blanks outside quotes do not
    inside = False
    pos = 0

    def copy(seg):
        nonlocal length, end
        out.append(seg)
        length += len(seg)
        if inside:
            end = length
        else:
            kept = seg.rstrip(" ")
            if kept:
                end = length - (len(seg) - len(kept))

    for m in _CLEANUP_SCAN.finditer(token):
        if m.start() < pos:
            continue
        if m.start() > pos:
            copy(token[pos:m.start()])
        tok = m.group()
        pos = m.end()
        if tok[0] == "\\":
            e = tok[1:]
            if e and (e in _QUOTES_AND_BACKSLASH or e == delim):
                out.append(e)
            elif e in _UNESCAPES and e:
                out.append(_UNESCAPES[e])
            else:
                # Not an escape: the backslash stays, the next character is ordinary text.
                out.append("\\")
                pos = m.start() + 1
            length += 1
            end = length
        elif inside or token.find("'", pos) >= 0:
            inside = not inside
            if inside:
                end = length
        else:
            out.append("'")
            length += 1
            end = length
    if pos < len(token):
        copy(token[pos:])
    return "".join(out)[:end]


def separate_string(s: str, delim: str, limit: int = 0) -> List[str]:
    """Split like switch_separate_string: quotes and escapes protect the delimiter.

    With ``limit`` the last piece keeps the unsplit rest, as the C code does
    when its array is full.
    """
    if s.startswith("^^") and len(s) > 3:
        delim, s = s[2], s[3:]
    if "\\" not in s and "'" not in s and not (limit and delim == " "):
        # Nothing can protect a delimiter: a plain split gives the same pieces.
        if delim == " ":
            return [p for p in s.split(" ") if p]
        pieces = s.split(delim, limit - 1) if limit else s.split(delim)
        if pieces[-1] == "":
            # A delimiter at the very end starts no further piece.
            pieces.pop()
        return [p.strip(" ") for p in pieces]
    return _separate_slow(s, delim, limit)


_SEPARATE_SCAN: Dict[str, "re.Pattern[str]"] = {}


def _separate_slow(s: str, delim: str, limit: int) -> List[str]:
    scan = _SEPARATE_SCAN.get(delim)
    if scan is None:
        scan = _SEPARATE_SCAN[delim] = re.compile(r"\\.?|'|" + re.escape(delim), re.S)
    pieces: List[str] = []
    n = len(s)
    start = n - len(s.lstrip(" ")) if delim == " " else 0
    inside = False
    skip_to = start
    for m in scan.finditer(s, start):
        if limit and len(pieces) == limit - 1:
            break
        i = m.start()
        if i < skip_to:
            continue
        tok = m.group()
        if tok[0] == "\\" and tok != delim:
            skip_to = m.end()
            continue
        if tok == "'" and delim != "'":
            # separate_string_blank_delim() toggles on every quote; only
            # separate_string_char_delim() first looks for a closing one.
            if delim == " " or inside or s.find("'", m.end()) >= 0:
                inside = not inside
            continue
        if inside:
            continue
        pieces.append(s[start:i])
        start = i + 1
        if delim == " ":
            while start < n and s[start] == " ":
                start += 1
        skip_to = start
    if start < n:
        pieces.append(s[start:])
    return [cleanup_token(p, delim) for p in pieces]


def find_end_paren(s: str, start: int, open_c: str, close_c: str) -> int:
    """Index of the bracket closing the one at ``start`` (nesting counted), or -1."""
    depth = 0
    for i in range(start, len(s)):
        c = s[i]
        if c == open_c and (depth == 0 or open_c != close_c):
            depth += 1
        elif c == close_c:
            depth -= 1
            if depth == 0:
                return i
    return -1


def parse_var_block(block: str) -> Dict[str, str]:
    """``k=v,k2=v2`` (already without brackets) into a dict; ``\\,`` is a literal comma."""
    result: Dict[str, str] = {}
    for item in separate_string(block, ","):
        pair = separate_string(item, "=", limit=2)
        if len(pair) == 2 and pair[0]:
            result[pair[0]] = pair[1]
    return result


def _split_top_level(s: str) -> List[str]:
    """Destinations separated by ``,`` (ring together) or ``|`` (one after another)."""
    legs: List[str] = []
    depth = 0
    inside = False
    start = 0
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "'" and (inside or s.find("'", i + 1) >= 0):
            inside = not inside
        elif not inside:
            if c in "[<":
                depth += 1
            elif c in "]>" and depth:
                depth -= 1
            elif depth == 0 and c in ",|":
                legs.append(s[start:i])
                start = i + 1
        i += 1
    legs.append(s[start:])
    return legs


ENTERPRISE_DELIM = ":_:"
# A value FreeSWITCH will not store as a channel variable: it logs CRIT
# "... contains a variable" and leaves the variable unset.
_REFUSED_MARK = "${"
_ENDPOINT_NAME = re.compile(r"[A-Za-z0-9_.-]+\Z")


@dataclasses.dataclass
class DialString:
    variables: Dict[str, str]      # what the switch sets on the channel
    url: str                       # the destination it really dials
    endpoint: str
    number: str
    gateway: bool
    multi_destination: bool
    requested: Dict[str, str] = dataclasses.field(default_factory=dict)   # as parsed, refused ones too
    refused: Dict[str, str] = dataclasses.field(default_factory=dict)
    enterprise: bool = False


def _invalid() -> OriginateError:
    return OriginateError("-ERR INVALID_NUMBER_FORMAT\n", "invalid", "INVALID_NUMBER_FORMAT")


def _leading_blocks(rest: str, opens: str, variables: Dict[str, str]) -> str:
    """Consume a run of ``{..}`` / ``<..>`` blocks into ``variables``; the text after them."""
    while rest and rest[0] in opens:
        close = {"{": "}", "<": ">", "[": "]"}[rest[0]]
        end = find_end_paren(rest, 0, rest[0], close)
        if end < 0:
            raise _invalid()
        variables.update(parse_var_block(rest[1:end]))
        rest = rest[end + 1:].lstrip(" ")
    return rest


def _dialable(url: str) -> bool:
    endpoint, slash, _ = url.partition("/")
    return bool(slash) and bool(_ENDPOINT_NAME.match(endpoint))


def _single(dialstring: str, inherited: Dict[str, str]) -> DialString:
    """One dial string without ``:_:``; the first leg that names an endpoint is the one that rings."""
    variables = dict(inherited)
    rest = _leading_blocks(dialstring.strip(), "{<", variables)
    legs = _split_top_level(rest)
    chosen, leg_vars = legs[0].strip(), {}
    for leg in legs:
        own: Dict[str, str] = {}
        url = _leading_blocks(leg.strip(), "[", own)
        if _dialable(url):
            chosen, leg_vars = url, own
            break
    else:
        chosen = _leading_blocks(chosen, "[", leg_vars)
    variables.update(leg_vars)
    if chosen.startswith("sofia/gateway/"):
        endpoint, _, number = chosen[len("sofia/gateway/"):].partition("/")
        gateway = True
    else:
        endpoint, _, number = chosen.rpartition("/")
        gateway = False
    return DialString(variables, chosen, endpoint, number, gateway, len(legs) > 1)


def _enterprise(dialstring: str) -> DialString:
    """Split first, parse after: what FreeSWITCH does with any dial string holding ``:_:``.

    The split ignores braces and quotes, so a ``:_:`` inside a variable's
    value cuts the variable block in two and what follows it gets dialed.
    """
    ultra: Dict[str, str] = {}
    rest = _leading_blocks(dialstring.lstrip(" "), "<", ultra)
    ultra["ignore_early_media"] = "true"
    fallback = None
    for piece in rest.split(ENTERPRISE_DELIM):
        if not piece.strip():
            continue
        try:
            dial = _single(piece, ultra)
        except OriginateError:
            continue
        dial.multi_destination = dial.enterprise = True
        if _dialable(dial.url):
            return dial
        fallback = fallback or dial
    if fallback is None:
        raise _invalid()
    return fallback


def parse_dialstring(dialstring: str) -> DialString:
    dial = _enterprise(dialstring) if ENTERPRISE_DELIM in dialstring else _single(dialstring, {})
    dial.requested = dial.variables
    dial.refused = {k: v for k, v in dial.variables.items() if _REFUSED_MARK in v}
    if dial.refused:
        dial.variables = {k: v for k, v in dial.variables.items() if k not in dial.refused}
    return dial


@dataclasses.dataclass
class OriginateArgs:
    dialstring: str
    extension: str
    dialplan: str
    context: str
    cid_name: Optional[str]
    cid_num: Optional[str]
    timeout: int
    dial: DialString


def _atoi(text: str) -> int:
    digits = ""
    for i, c in enumerate(text.strip()):
        if c.isdigit() or (i == 0 and c in "+-"):
            digits += c
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0


def parse_originate(arg: Optional[str]) -> OriginateArgs:
    """The argument string of ``originate`` (everything after the command name)."""
    argv = separate_string(arg or "", " ")
    if len(argv) < 2 or len(argv) > 7:
        raise OriginateError(ORIGINATE_USAGE, "usage")
    dialstring, extension = argv[0], argv[1]
    if not extension:
        raise OriginateError(ORIGINATE_USAGE, "usage")
    dialplan = argv[2] if len(argv) > 2 and argv[2] else "XML"
    context = argv[3] if len(argv) > 3 and argv[3] else "default"
    cid_name = argv[4] if len(argv) > 4 else None
    cid_num = argv[5] if len(argv) > 5 else None
    timeout = _atoi(argv[6]) if len(argv) > 6 else 60
    dial = parse_dialstring(dialstring)
    if _atoi(dial.requested.get("originate_timeout", "")) > 0:
        timeout = _atoi(dial.requested["originate_timeout"])
    return OriginateArgs(dialstring, extension, dialplan, context, cid_name, cid_num, timeout, dial)


def split_api(text: str) -> Tuple[str, Optional[str]]:
    """``cmd arg...`` into the command name and the raw argument (None if absent)."""
    name, sep, arg = text.partition(" ")
    return name, (arg if sep else None)
