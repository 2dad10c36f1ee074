"""Operator JSON into immutable objects, and the rules that combine them.

No Redis and no gevent here: every function takes the raw values and returns
a value or raises ``ModelError`` with a reason fit for the rejected record.
"""
import dataclasses
from typing import Any, Dict, Mapping, Optional, Tuple

import orjson

from . import agent_pacing, callee_time, originate, timewindow
from .deny_list import EVERY_LAYER, denied_variable
from . import redial as redial_rules

TASK_DEFAULTS = {
    "enable": True,
    "limit": 1,
    "destination_dialplan": "XML",
    "destination_context": "default",
}

# Params a task understands; anything else is reported, not silently ignored,
# because a typo ("limt") would otherwise run the task on a default.
TASK_PARAMS = frozenset({
    "enable", "line_group", "limit", "start_time", "stop_time", "work_hour",
    "work_time", "work_week", "holiday", "number_queue",
    "destination_extension", "destination_dialplan", "destination_context", "redial", "cps", "callee_time",
    "pacing",
})
LINE_PARAMS = frozenset({"enable", "gateway", "limit", "count", "prefix", "dialstring", "rest",
                         "fault_threshold", "fault_try_interval", "fault_condition"})
# mod_cti's line field areacode (a Chinese trunk-prefix rule) is not taken:
# an unknown param is refused, so an operator who relies on it is told.

# The slowest and fastest paces a task, line or group may ask for: beyond a
# day between calls a number would wait in a queue that looks stuck; cps
# above 10,000 is no limit on any switch.
MAX_REST_MS = 86_400_000
MAX_CPS = 10_000.0


class ModelError(ValueError):
    """Bad operator input; the message is the reason written to the rejected record."""


def loads(raw):
    """Parse JSON from Redis bytes or text; ModelError on anything but an object."""
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson refuses invalid UTF-8; say that plainly rather than "JSON".
        raise ModelError("not valid JSON: %s" % exc) from None
    if not isinstance(value, dict):
        raise ModelError("not a JSON object")
    return value


def _section(doc, name, where):
    value = doc.get(name, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ModelError("%s: %r must be an object" % (where, name))
    return value


def _check_variables(variables, where, number_entry=False):
    out = {}
    for name, value in variables.items():
        try:
            originate.check_var_name(name)
            # Checked now so a bad value rejects the whole entry; escaped
            # later, once, by build_originate.
            originate.format_value(name, value)
            out[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        except originate.UnsafeValue as exc:
            raise ModelError("%s: %s" % (where, exc)) from None
        _check_denied(name, where, number_entry)
    return out


def _bool(value, where):
    if not isinstance(value, bool):
        raise ModelError("%s must be true or false, not %r" % (where, value))
    return value


def _count(value, where, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ModelError("%s must be an integer >= %d, not %r" % (where, minimum, value))
    return value


def _number(value, where, minimum, maximum, integer=False):
    """A number operators may also write as text ("10", as mod_cti's docs show some fields)."""
    if isinstance(value, str):
        try:
            value = float(value.strip()) if not integer else int(value.strip())
        except ValueError:
            raise ModelError("%s must be a number, not %r" % (where, value)) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value \
            or (integer and not isinstance(value, int)) or not minimum <= value <= maximum:
        raise ModelError("%s must be %s %s..%s, not %r" % (
            where, "an integer" if integer else "a number", minimum, maximum, value))
    return value


def _ms(value, where):
    """Milliseconds (rest, fault_try_interval, connect_time) as seconds."""
    return _number(value, where, 0, MAX_REST_MS) / 1000.0


def _name_list(value, where):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ModelError("%s must be a non-empty list of names, not %r" % (where, value))
    return tuple(value)


# The longest task, line, group or schedule config name: names go into key
# names, logs and status records.
NAME_MAX = 128


def check_name(name, what):
    """Task, line and group names go into key names and logs: printable, no spaces."""
    if isinstance(name, bytes):
        try:
            name = name.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelError("%s name is not UTF-8" % what) from None
    if not name or len(name) > NAME_MAX or any(c.isspace() or not c.isprintable() for c in name):
        raise ModelError("%s name %s must be 1..%d printable characters without spaces"
                         % (what, raw_repr(repr(name), 200), NAME_MAX))
    return name


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    enable: bool
    line_groups: Tuple[str, ...]
    limit: int
    window: timewindow.Window
    number_queue: str
    extension: str
    dialplan: str
    context: str
    host_variables: Tuple[Tuple[str, str], ...]
    template_variables: Tuple[Tuple[str, str], ...]
    source: str          # "template", "host" or "template+host"
    redial: redial_rules.Strategy = redial_rules.NO_REDIAL
    cps: float = 0.0     # new calls per second across every host (0 = unpaced)
    callee: Optional[callee_time.CalleeHours] = None     # calling hours read in the callee's zone
    pacing: Optional[agent_pacing.PacingSpec] = None     # dial for a mod_callcenter queue's agents

    kind = "queue"

    def variable_layers(self):
        """Task variables in precedence order, lowest first (host, then template)."""
        return (self.host_variables, self.template_variables)


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    name: str
    line_groups: Tuple[str, ...]
    extension: str
    dialplan: str
    context: str
    variables: Tuple[Tuple[str, str], ...]
    redial: redial_rules.Strategy = redial_rules.NO_REDIAL

    kind = "schedule"
    enable = True

    def variable_layers(self):
        return (self.variables,)


@dataclasses.dataclass(frozen=True)
class ScheduledNumber:
    """A member of the schedule sorted set, parsed."""
    entry: "NumberEntry"
    config: str
    expires: float            # unix time; 0 = never


@dataclasses.dataclass(frozen=True)
class Line:
    name: str
    enable: bool
    gateway: str          # the dial string before the number (mod_cti's dialstring: up to the placeholder)
    prefix: str
    limit: int
    variables: Tuple[Tuple[str, str], ...]
    suffix: str = ""      # the dial string after the number (mod_cti's dialstring only)
    rest: float = 0.0     # seconds the line rests after each call placed on it (all hosts)
    fault_threshold: int = 0        # consecutive failures that take it out of service (0 = never)
    fault_try_interval: float = 0.0     # seconds out of service before one probe call
    fault_connect_time: Optional[float] = None  # an unanswered call shorter than this is a failure (None: every one)


@dataclasses.dataclass(frozen=True)
class LineGroup:
    name: str
    tiers: Tuple[Tuple[str, ...], ...]     # priority tiers: a later one only while the earlier are full
    enable: bool = True
    rest: float = 0.0                      # seconds between two calls placed through the group (all hosts)
    redial: redial_rules.GroupRules = redial_rules.NO_GROUP_RULES

    @property
    def lines(self) -> Tuple[str, ...]:
        return tuple(line for tier in self.tiers for line in tier)


@dataclasses.dataclass(frozen=True)
class NumberEntry:
    number: str
    variables: Tuple[Tuple[str, str], ...]
    params: Mapping[str, Any]

    @property
    def id(self) -> Optional[str]:
        """The upstream's idempotency key (params.id), if any."""
        value = self.params.get("id")
        return None if value is None else str(value)


def merge_task(name, template_raw, host_raw, tz):
    """The task as this host runs it, or None when neither hash has it.

    ``@host`` params override ``@template`` params key by key; a key missing
    in both takes TASK_DEFAULTS. Variables are kept apart because the seed
    gives them the opposite precedence (template over host).
    """
    name = check_name(name, "task")
    if template_raw is None and host_raw is None:
        return None
    docs = {}
    for scope, raw in (("template", template_raw), ("host", host_raw)):
        if raw is None:
            continue
        try:
            docs[scope] = loads(raw)
        except ModelError as exc:
            raise ModelError("task %r (@%s): %s" % (name, scope, exc)) from None
    params = dict(TASK_DEFAULTS)
    variables = {}
    for scope in ("template", "host"):
        if scope not in docs:
            continue
        where = "task %r (@%s)" % (name, scope)
        section = _section(docs[scope], "params", where)
        unknown = sorted(set(section) - TASK_PARAMS)
        if unknown:
            raise ModelError("%s: unknown params %s" % (where, ", ".join(unknown)))
        params.update(section)
        variables[scope] = _check_variables(_section(docs[scope], "variables", where), where + " variables")
    where = "task %r" % name
    if "work_time" in params and "work_hour" in params:
        # One scope may say work_time and the other work_hour: the later
        # (host) scope's spelling wins rather than being called ambiguous.
        host_section = docs.get("host", {}).get("params", {}) or {}
        drop = "work_hour" if "work_time" in host_section else "work_time"
        params.pop(drop)
    if "number_queue" not in params:
        raise ModelError("%s: number_queue is missing" % where)
    queue = params["number_queue"]
    if not isinstance(queue, str) or not queue or len(queue) > 256 or "\n" in queue:
        raise ModelError("%s: number_queue must be a key name, not %r" % (where, queue))
    if "line_group" not in params:
        raise ModelError("%s: line_group is missing" % where)
    if "destination_extension" not in params:
        raise ModelError("%s: destination_extension is missing" % where)
    extension, dialplan, context = _destination(params, where)
    try:
        callee = callee_time.parse(params.get("callee_time"), params)
    except callee_time.CalleeTimeError as exc:
        raise ModelError("%s: %s" % (where, exc)) from None
    try:
        # In the callee's time the calling hours are checked per number;
        # the task itself keeps its enable and start/stop bounds.
        window = timewindow.parse_window(
            {k: v for k, v in params.items() if k not in callee_time.HOURS_PARAMS} if callee else params, tz)
    except timewindow.WindowError as exc:
        raise ModelError("%s: %s" % (where, exc)) from None
    return Task(
        name=name,
        enable=_bool(params["enable"], where + ": enable"),
        line_groups=_name_list(params["line_group"], where + ": line_group"),
        limit=_count(params["limit"], where + ": limit", 0),
        window=window,
        number_queue=queue,
        extension=extension, dialplan=dialplan, context=context,
        host_variables=tuple(variables.get("host", {}).items()),
        template_variables=tuple(variables.get("template", {}).items()),
        source="+".join(s for s in ("template", "host") if s in docs),
        redial=_redial(params.get("redial"), where),
        cps=_cps(params.get("cps"), where),
        callee=callee,
        pacing=_pacing(params.get("pacing"), where),
    )


def _pacing(value, where):
    try:
        return agent_pacing.parse(value)
    except agent_pacing.PacingError as exc:
        raise ModelError("%s: %s" % (where, exc)) from None


def _cps(value, where):
    if value is None:
        return 0.0
    cps = float(_number(value, where + ": cps", 0, MAX_CPS))
    if cps == 0:
        raise ModelError("%s: cps must be above 0 (leave it out for an unpaced task), not %r" % (where, value))
    return cps


def _redial(value, where):
    try:
        return redial_rules.parse(value, "redial")
    except redial_rules.RedialError as exc:
        raise ModelError("%s: %s" % (where, exc)) from None


def _destination(params, where):
    try:
        return originate.check_destination(
            _as_text(params["destination_extension"]), _as_text(params["destination_dialplan"]),
            _as_text(params["destination_context"]))
    except originate.UnsafeValue as exc:
        raise ModelError("%s: %s" % (where, exc)) from None


def _as_text(value):
    # Operators write extensions as numbers as often as strings.
    if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
        raise ModelError("destination must be text, not %r" % (value,))
    return str(value)


SCHEDULE_PARAMS = frozenset({"line_group", "destination_extension", "destination_dialplan",
                             "destination_context", "redial"})


def parse_schedule_config(name, raw):
    """A cti_schedule_dialer_config entry: line groups, destination and variables."""
    name = check_name(name, "schedule config")
    where = "schedule config %r" % name
    doc = loads(raw)
    params = dict(TASK_DEFAULTS)
    section = _section(doc, "params", where)
    unknown = sorted(set(section) - SCHEDULE_PARAMS)
    if unknown:
        raise ModelError("%s: unknown params %s" % (where, ", ".join(unknown)))
    params.update(section)
    for required in ("line_group", "destination_extension"):
        if required not in params:
            raise ModelError("%s: %s is missing" % (where, required))
    extension, dialplan, context = _destination(params, where)
    return ScheduleConfig(
        name=name, line_groups=_name_list(params["line_group"], where + ": line_group"),
        extension=extension, dialplan=dialplan, context=context,
        variables=tuple(_check_variables(_section(doc, "variables", where), where + " variables").items()),
        redial=_redial(params.get("redial"), where))


def parse_scheduled(raw):
    """A schedule member: number entry JSON whose params also carry config and expires."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if not text.strip().startswith("{"):
        raise ModelError("schedule member must be JSON with params.number and params.config")
    entry = parse_number(raw)
    config = entry.params.get("config")
    if not isinstance(config, str) or not config:
        raise ModelError("schedule member: params.config must name a schedule config, not %r" % (config,))
    expires = entry.params.get("expires", 0)
    if expires is None:
        expires = 0
    if isinstance(expires, bool) or not isinstance(expires, (int, float)) or expires < 0:
        raise ModelError("schedule member: params.expires must be a unix time or 0, not %r" % (expires,))
    return ScheduledNumber(entry=entry, config=config, expires=float(expires))


def parse_line(name, raw):
    name = check_name(name, "line")
    where = "line %r" % name
    doc = loads(raw)
    params = _section(doc, "params", where)
    unknown = sorted(set(params) - LINE_PARAMS)
    if unknown:
        raise ModelError("%s: unknown params %s" % (where, ", ".join(unknown)))
    if "dialstring" in params and ("gateway" in params or "prefix" in params):
        raise ModelError("%s: give gateway (and prefix) or dialstring, not both" % where)
    if "gateway" not in params and "dialstring" not in params:
        raise ModelError("%s: gateway is missing (or mod_cti's dialstring)" % where)
    if "limit" not in params and "count" not in params:
        raise ModelError("%s: limit is missing (the line's concurrent-call capacity; mod_cti calls it count)"
                         % where)
    capacity = {key: _count(params[key], "%s: %s" % (where, key), 0) for key in ("limit", "count") if key in params}
    if len(set(capacity.values())) > 1:
        # mod_cti's count and our limit are one setting: two values is a
        # mistake the operator should see, not one we guess at.
        raise ModelError("%s: limit %d and count %d disagree (they are the same setting; give one)"
                         % (where, capacity["limit"], capacity["count"]))
    try:
        if "dialstring" in params:
            gateway, suffix = originate.split_dialstring(params["dialstring"])
            prefix = ""
        else:
            gateway, suffix = originate.check_gateway(params["gateway"]), ""
            prefix = originate.check_prefix(params.get("prefix", "") or "")
    except originate.UnsafeValue as exc:
        raise ModelError("%s: %s" % (where, exc)) from None
    return Line(
        name=name,
        enable=_bool(params.get("enable", True), where + ": enable"),
        gateway=gateway,
        prefix=prefix,
        suffix=suffix,
        limit=next(iter(capacity.values())),
        variables=tuple(_check_variables(_section(doc, "variables", where), where + " variables").items()),
        **_line_health(params, where),
    )


# Consecutive failures are counted in Redis; a threshold beyond this would
# never trip on any real trunk.
MAX_FAULT_THRESHOLD = 1_000_000


def _line_health(params, where):
    """mod_cti's rest and fault detection fields of a line."""
    out = {"rest": _ms(params.get("rest", 0), where + ": rest")}
    threshold = _number(params.get("fault_threshold", 0), where + ": fault_threshold", 0, MAX_FAULT_THRESHOLD,
                        integer=True)
    interval = _ms(params.get("fault_try_interval", 0), where + ": fault_try_interval")
    condition = params.get("fault_condition")
    connect_time = None
    if condition is not None:
        if not isinstance(condition, dict):
            raise ModelError("%s: fault_condition must be an object such as {\"connect_time\": 3000}, not %r"
                             % (where, condition))
        unknown = sorted(set(condition) - {"connect_time"})
        if unknown:
            raise ModelError("%s: fault_condition: unknown fields %s (known: connect_time)" % (where, ", ".join(unknown)))
        if "connect_time" in condition:
            connect_time = _ms(condition["connect_time"], where + ": fault_condition.connect_time")
    if threshold and not interval:
        # Out of service with no probe would be out for good: a restart of
        # every daemon would be the only way back.
        raise ModelError("%s: fault_threshold %d needs fault_try_interval (milliseconds until a probe call)"
                         % (where, threshold))
    out.update(fault_threshold=threshold, fault_try_interval=interval, fault_connect_time=connect_time)
    return out


GROUP_FIELDS = frozenset({"line", "lines", "enable", "rest", "redialer_count", "redialer_rule",
                          "no_redialer_rule"})


def parse_group(name, raw):
    """A line group: ``{"lines": [...]}`` (ours) or mod_cti's ``{"line": [...], "enable": ...}``.

    ``line`` may hold priority tiers (``[["a", "b"], ["c"]]``); a flat list is
    one tier. The fields may also sit under ``params``.
    """
    name = check_name(name, "line group")
    where = "line group %r" % name
    doc = loads(raw)
    params = doc.get("params") if isinstance(doc.get("params"), dict) else {}
    fields = {**params, **{k: v for k, v in doc.items() if k not in ("params", "variables")}}
    unknown = sorted(set(fields) - GROUP_FIELDS)
    if unknown:
        raise ModelError("%s: unknown fields %s" % (where, ", ".join(unknown)))
    if "line" in fields and "lines" in fields:
        raise ModelError("%s: give line (mod_cti) or lines, not both" % where)
    spec = fields.get("line", fields.get("lines"))
    key = "line" if "line" in fields else "lines"
    if isinstance(spec, list) and spec and all(isinstance(tier, list) for tier in spec):
        tiers = tuple(_name_list(tier, "%s: %s[%d]" % (where, key, i)) for i, tier in enumerate(spec))
    elif isinstance(spec, list) and any(isinstance(tier, list) for tier in spec):
        raise ModelError("%s: %s mixes line names and tiers (lists of names)" % (where, key))
    else:
        tiers = (_name_list(spec, "%s: %s" % (where, key)),)
    seen = set()
    for tier in tiers:
        for line in tier:
            check_name(line, where + " line")
            if line in seen:
                raise ModelError("%s: line %r is listed twice" % (where, line))
            seen.add(line)
    try:
        rules = redial_rules.parse_group_rules(fields)
    except redial_rules.RedialError as exc:
        raise ModelError("%s: %s" % (where, exc)) from None
    return LineGroup(name=name, tiers=tiers, enable=_bool(fields.get("enable", True), where + ": enable"),
                     rest=_ms(fields.get("rest", 0), where + ": rest"), redial=rules)


def _check_denied(name, where, number_entry):
    entry = denied_variable(name)
    if entry is None:
        return
    _, layers, why = entry
    if layers == EVERY_LAYER:
        raise ModelError("%s: %r is not allowed in any variables: it %s" % (where, name, why))
    if number_entry:
        raise ModelError("%s: %r is not allowed from a number entry: it %s" % (where, name, why))


def parse_number(raw):
    """A queue or schedule entry: plain text number or JSON with params/variables."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelError("number entry is not UTF-8") from None
    else:
        text = raw
    stripped = text.strip()
    if stripped.startswith("{"):
        doc = loads(stripped)
        params = _section(doc, "params", "number entry")
        if "number" not in params:
            raise ModelError("number entry: params.number is missing")
        number = params["number"]
        if isinstance(number, bool) or not isinstance(number, (str, int)):
            raise ModelError("number entry: params.number must be text, not %r" % (number,))
        variables = _check_variables(_section(doc, "variables", "number entry"), "number entry variables",
                                     number_entry=True)
        entry_id = params.get("id")
        if entry_id is not None and (isinstance(entry_id, bool) or not isinstance(entry_id, (str, int))
                                     or not str(entry_id) or len(str(entry_id)) > 128):
            raise ModelError("number entry: params.id must be text of 1..128 characters, not %r" % (entry_id,))
    else:
        # Plain entries are checked as written: surrounding whitespace is
        # suspicious enough (a pasted CR/LF) to refuse rather than trim.
        number, params, variables = text, {}, {}
    try:
        number = originate.check_number(number)
    except originate.UnsafeValue as exc:
        raise ModelError(str(exc)) from None
    return NumberEntry(number=number, variables=tuple(variables.items()), params=params)


def channel_variables(*layers: Optional[Tuple[Tuple[str, str], ...]], own: Mapping[str, str] = None) -> Dict[str, str]:
    """Merge variable layers given lowest precedence first; ``own`` wins over all.

    Queue calls: number, task@host, task@template, line (the seed's order).
    Schedule calls: number, schedule config, line.
    FreeSWITCH looks variables up without regard to case, so names are
    merged the same way: ``ORIGINATION_UUID`` in a lower layer cannot
    outlive our ``origination_uuid``.
    """
    merged: Dict[str, Tuple[str, str]] = {}
    for layer in tuple(layers) + (tuple(own.items()) if own else (),):
        for name, value in layer or ():
            merged[name.lower()] = (name, value)
    return dict(merged.values())


def as_text(value):
    """A Redis reply (bytes) as text; invalid UTF-8 shown as \\xNN."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value


def raw_repr(raw, limit=2000):
    """Raw Redis value as text for a rejected record, even if it is not UTF-8."""
    if raw is None:
        return ""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "backslashreplace")
    return raw if len(raw) <= limit else raw[:limit] + "...(truncated)"

