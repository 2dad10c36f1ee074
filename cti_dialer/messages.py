"""Every message and record the dialer exchanges through Redis, declared once.

Pure: builds and parses values, never talks to Redis. Key and channel names
are in ``keys``; this module says what goes in them.

- ``config_change``: published by operators, the admin CLI and ``notify`` on
  ``config@all`` / ``config@<host>``, read by every daemon.
- ``HostStatus``: the hash ``cti_dialer_status@<host>``.
- ``TaskStatus``: one value of the hash ``cti_dialer_task_status@<host>``.
"""
import dataclasses
from typing import Dict, Iterable, List, Mapping, NamedTuple, Optional, Union

import orjson

from .keys import CONFIG_TABLES
from .model import NAME_MAX, ModelError, as_text, loads

CONFIG_CHANGE = "config_change"


class BadMessage(ValueError):
    """Not a valid message or record; the text is the reason given to the operator."""


# --- config_change -----------------------------------------------------------------


class ConfigChange(NamedTuple):
    table: str
    key: Optional[str]      # None: reload the whole table


# A config_change is a few hundred bytes; anything much larger is junk and is
# refused before it is parsed, so its size never reaches a reason or a log.
MAX_MESSAGE_BYTES = 16384
# A key longer than any name can be names nothing, so nothing is read or kept for it.
MAX_KEY_CHARS = NAME_MAX
# A batch naming more keys of one table than this rereads the table instead:
# one HGETALL rather than one read per key.
MAX_KEYS_PER_TABLE = 32


def _short(value, limit=60) -> str:
    """repr of a value from a message, cut so a reason stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...(%d characters)" % len(text)


def _checked_change(msg) -> ConfigChange:
    # The order of the checks decides the reason given for a message with
    # several faults; it is the order the daemon has always used.
    if not isinstance(msg, dict):
        raise BadMessage("not a JSON object")
    if msg.get("type") != CONFIG_CHANGE:
        raise BadMessage("type must be 'config_change', not %s" % _short(msg.get("type")))
    table = msg.get("table")
    key = msg.get("key")
    if key is not None and (not isinstance(key, str) or not key):
        raise BadMessage("key must be a non-empty string when present")
    if key is not None and len(key) > MAX_KEY_CHARS:
        raise BadMessage("key is %d characters long; no name is longer than %d" % (len(key), MAX_KEY_CHARS))
    if table not in CONFIG_TABLES:
        raise BadMessage("unknown table %s" % _short(table))
    return ConfigChange(table, key)


def config_change(table: str, key: Optional[str] = None) -> bytes:
    """The message to PUBLISH after changing ``table`` (entry ``key``, or all of it when None).

    Raises BadMessage for what a daemon would reject, so none is ever sent.
    """
    msg = {"type": CONFIG_CHANGE, "table": table}
    if key is not None:
        msg["key"] = key
    _checked_change(msg)
    return orjson.dumps(msg)


def parse_config_change(data: Union[bytes, str]) -> ConfigChange:
    """A received config_change (bytes or text); BadMessage with the reason when malformed."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise BadMessage("message is %d %s long; a config_change is at most %d"
                         % (len(data), "bytes" if isinstance(data, bytes) else "characters", MAX_MESSAGE_BYTES))
    try:
        msg = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadMessage(str(exc)) from None
    return _checked_change(msg)


def coalesce(changes: Iterable[ConfigChange], max_keys: int = MAX_KEYS_PER_TABLE) -> List[ConfigChange]:
    """The rereads that cover ``changes``: each (table, key) once, in first-seen order.

    A change without a key rereads everything (as the daemon always has:
    an operator who changed a whole table may have changed others), so
    when there is one it alone is returned: it covers every other change,
    before or after it (each reread reads Redis as it is now). More than
    ``max_keys`` keys of one table are read the same way: a few whole hashes
    instead of one read per key.
    """
    distinct: Dict[ConfigChange, None] = {}
    per_table: Dict[str, int] = {}
    for change in changes:
        if change.key is None:
            return [change]
        if change not in distinct:
            distinct[change] = None
            per_table[change.table] = per_table.get(change.table, 0) + 1
            if per_table[change.table] > max_keys:
                return [ConfigChange(change.table, None)]
    return list(distinct)


# --- status records ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HostStatus:
    """``cti_dialer_status@<host>``: one daemon's heartbeat and state."""
    host: str
    pid: int
    version: str
    started_at: float
    heartbeat: float
    state: str              # running, draining
    esl: str                # connected, disconnected
    active_calls: int
    pending_writes: int     # results waiting for Redis
    tracked_claims: int     # per-call state held in memory: both 0 when idle
    tracked_uuids: int
    rss_kb: int


@dataclasses.dataclass(frozen=True)
class TaskStatus:
    """One value of ``cti_dialer_task_status@<host>``: a task as this host runs it."""
    state: str              # running, paused, waiting, finished, error, deleted
    reason: str
    active: int
    limit: int
    queue: str
    queued: int
    redials_pending: int
    dialed: int
    answered: int
    failed: int
    rejected: int
    last_error: str
    counters: str           # the key of the task's counters across hosts
    updated: float
    # Written by newer daemons; an older record without them reads as these defaults.
    machine: int = 0        # answered by an answering machine (this host, since its start)
    abandoned: int = 0      # paced tasks: live answers not with an agent in time (this host, since start)
    abandon_rate: float = 0.0   # paced tasks: over the pacing window (this host)
    agents_free: int = -1   # paced tasks: free agents of the task's queue now; -1 when not paced
    pacing_risk: float = 0.0    # predictive tasks: the abandon risk the next call may carry now


def _field_text(value) -> str:
    # repr: the shortest text that reads back as the same float
    return repr(value) if isinstance(value, float) else str(value)


def encode_host_status(status: HostStatus) -> dict:
    """The hash fields to HSET (text values, as every daemon has written them)."""
    return {f.name: _field_text(getattr(status, f.name)) for f in dataclasses.fields(HostStatus)}


def decode_host_status(fields: Mapping) -> HostStatus:
    """From HGETALL (bytes or text); BadMessage naming a missing or malformed field.

    Fields this version does not know (a newer daemon's) are ignored.
    """
    values = {as_text(k): as_text(v) for k, v in fields.items()}
    out = {}
    for f in dataclasses.fields(HostStatus):
        if f.name not in values:
            raise BadMessage("host status: no field %r" % f.name)
        try:
            out[f.name] = f.type(values[f.name])
        except ValueError:
            raise BadMessage("host status: %s = %r is not %s" % (f.name, values[f.name], f.type.__name__)) from None
    return HostStatus(**out)


def encode_task_status(status: TaskStatus) -> bytes:
    """The JSON to store as the task's field (orjson writes a dataclass's fields in order, without a copy)."""
    return orjson.dumps(status)


def _json_typed(kind, value):
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def decode_task_status(raw: Union[bytes, str, None]) -> TaskStatus:
    """From HGET (bytes or text); BadMessage naming a missing or malformed field.

    Fields this version does not know (a newer daemon's) are ignored.
    """
    try:
        doc = loads(raw)
    except ModelError as exc:
        raise BadMessage("task status: %s" % exc) from None
    out = {}
    for f in dataclasses.fields(TaskStatus):
        if doc is not None and f.name not in doc and f.default is not dataclasses.MISSING:
            out[f.name] = f.default
            continue
        if doc is None or f.name not in doc:
            raise BadMessage("task status: no field %r" % f.name)
        if not _json_typed(f.type, doc[f.name]):
            raise BadMessage("task status: %s = %r is not %s" % (f.name, doc[f.name], f.type.__name__))
        out[f.name] = f.type(doc[f.name])
    return TaskStatus(**out)


def parse_line_state(fields) -> Dict[str, Dict[str, float]]:
    """The line-state hash (line_gates.LINES) by line: {line: {"out"|"failures"|"rest": value}}.

    Group rests ('rest@<group>') are left out; a field this version does not
    know is skipped rather than an error, since the hash is shared by every
    daemon version on the domain.
    """
    out: Dict[str, Dict[str, float]] = {}
    for field, value in fields.items():
        kind, sep, line = as_text(field).partition(":")
        if not sep or kind not in ("out", "failures", "rest"):
            continue
        try:
            out.setdefault(line, {})[kind] = float(value)
        except ValueError:
            continue
    return out
