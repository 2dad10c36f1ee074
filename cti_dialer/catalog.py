"""The configuration as last read from Redis: tasks, lines, groups and schedule configs.

The catalog parses and merges what operators wrote (through ``model``),
reports bad entries once per distinct problem, and answers the questions
the rest of the daemon asks of the configuration: which task or config a
claim dials for, which lines it may use, whether a task may dial now. It
reads Redis only through the store; it never dials and never waits.
"""
import datetime
import logging
import time
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple, Union

import gevent.event

from . import keys as keymod, model, timewindow
from .claim import Claim, Kind
from .messages import MAX_KEY_CHARS, ConfigChange
from .runtime import REDIS_ERRORS, Wakeups
from .store import Candidates

log = logging.getLogger("cti_dialer")

Source = Union[model.Task, model.ScheduleConfig]

# Reasons are kept (task status) and written (rejected records, log lines);
# a value from Redis quoted in one must not make them large.
MAX_REASON_CHARS = 500
# Longer than any valid name (messages.MAX_KEY_CHARS characters of up to four
# bytes): refused without being quoted or decoded.
MAX_NAME_BYTES = 4 * MAX_KEY_CHARS
# How much of a bad name a rejected record and a log line show.
NAME_SHOWN_CHARS = 200


def _raw_name(name) -> bytes:
    """A name as Redis holds it: lookups and memos use this, never a decoded display form."""
    return name if isinstance(name, bytes) else name.encode("utf-8")


class _Table(NamedTuple):
    """How the catalog reads and keeps one operator table."""
    kind: str               # in rejected records and memos
    read_all: Callable      # -> {raw name: raw value}
    read_one: Callable      # name -> raw value (None when absent)
    set: Callable           # (name, raw value or None)
    states: Tuple[dict, ...]    # what is kept per (valid, existing) name


class Catalog:
    def __init__(self, *, store, keys: keymod.Keys, tz, reload_interval: float, wakeups: Wakeups):
        self.store = store
        self.keys = keys
        self.tz = tz
        self.reload_interval = reload_interval
        self.tasks: Dict[str, model.Task] = {}
        self.task_errors: Dict[str, str] = {}
        self.lines: Dict[str, model.Line] = {}
        self.groups: Dict[str, model.LineGroup] = {}
        self.schedule_configs: Dict[str, model.ScheduleConfig] = {}
        self.schedule_config_errors: Dict[str, str] = {}
        self._line_errors: Dict[str, str] = {}
        self._group_errors: Dict[str, str] = {}
        self.loaded = gevent.event.Event()
        self._last_full_read = 0.0
        # (kind, raw name) -> the reason last reported; only for names in Redis.
        self._reported: Dict[Tuple[str, bytes], str] = {}
        self.wakeups = wakeups
        store = self.store
        # (Store methods are looked up at each call, not bound here.)
        self._tables = {
            keymod.TASK_TABLE: _Table("task", self._read_tasks, lambda n: store.read_task(n), self._set_task,
                                      (self.tasks, self.task_errors)),
            keymod.LINE_TABLE: _Table("line", lambda: store.read_lines(), lambda n: store.read_line(n),
                                      self._set_line, (self.lines, self._line_errors)),
            keymod.GROUP_TABLE: _Table("group", lambda: store.read_groups(), lambda n: store.read_group(n),
                                       self._set_group, (self.groups, self._group_errors)),
            keymod.SCHEDULE_CONFIG_TABLE: _Table(
                "schedule_config", lambda: store.read_schedule_configs(), lambda n: store.read_schedule_config(n),
                self._set_schedule_config, (self.schedule_configs, self.schedule_config_errors)),
        }

    # --- component --------------------------------------------------------------

    def initialize(self):
        self.reload_all()

    def reload_due(self, now: float) -> bool:
        return now >= self._last_full_read + self.reload_interval

    def loop(self, now: float) -> float:
        """Reread everything every ``reload_interval`` (pub/sub can drop messages); returns the wait."""
        if self.reload_due(now):
            self.reload_all(now)
        return max(0.0, self._last_full_read + self.reload_interval - now)

    def shutdown(self):
        pass

    # --- reading -------------------------------------------------------------------

    def reload_all(self, now: Optional[float] = None) -> None:
        """Reread every task, line, group and schedule config (after a reconnect and on a timer)."""
        for table in (keymod.LINE_TABLE, keymod.GROUP_TABLE, keymod.SCHEDULE_CONFIG_TABLE, keymod.TASK_TABLE):
            self._reload_table(table)
        self._last_full_read = now if now is not None else time.time()
        self.loaded.set()
        self.wakeups.everything()

    def apply(self, change: ConfigChange) -> None:
        """Reread what one config_change names, and wake who it concerns."""
        if change.key is None:
            self.reload_all()
            return
        table = self._tables[change.table]
        was_running = change.key in self.tasks
        table.set(change.key, table.read_one(change.key))
        if change.table != keymod.TASK_TABLE:
            self.wakeups.everything()
        elif was_running or change.key in self.tasks:
            # Only tasks the dispatcher runs or must stop: a wake-up is state
            # too, and the key may name nothing at all.
            self.wakeups.task(change.key)

    def _reload_table(self, name: str) -> None:
        table = self._tables[name]
        entries = {_raw_name(n): raw for n, raw in table.read_all().items()}
        for gone in {n for state in table.states for n in state if _raw_name(n) not in entries}:
            table.set(gone, None)
        for memo in [m for m in self._reported if m[0] == table.kind and m[1] not in entries]:
            del self._reported[memo]
        for raw_name in sorted(entries):
            table.set(raw_name, entries[raw_name])

    def _read_tasks(self):
        template, host = self.store.read_tasks()
        return {name: (template.get(name), host.get(name)) for name in set(template) | set(host)}

    def _parse(self, parse, *args):
        """Run a model parser; any failure, even an unexpected one, is a ModelError."""
        try:
            return parse(*args)
        except model.ModelError:
            raise
        except Exception as exc:
            log.exception("unexpected error reading %r", args[0])
            raise model.ModelError("cannot be read: %s: %s" % (type(exc).__name__, exc)) from None

    def _checked_name(self, kind, what, name, source, raw) -> Optional[str]:
        """The name as text, or None when no entry can have it (reported; nothing is kept for it)."""
        try:
            if len(_raw_name(name)) > MAX_NAME_BYTES:
                raise model.ModelError("%s name is %d bytes long; no name is longer than %d characters"
                                       % (what, len(_raw_name(name)), MAX_KEY_CHARS))
            return model.check_name(name, what)
        except model.ModelError as exc:
            self.report(kind, name, source, raw, str(exc))
            return None

    def _forget(self, kind, name, states) -> None:
        """An entry gone from Redis: nothing is kept for its name."""
        self._reported.pop((kind, _raw_name(name)), None)
        if isinstance(name, bytes):
            try:
                name = name.decode("utf-8")
            except UnicodeDecodeError:
                return          # never kept under a decoded form
        for state in states:
            state.pop(name, None)

    def _set_task(self, name, raws):
        template_raw, host_raw = raws or (None, None)
        if template_raw is None and host_raw is None:
            self._forget("task", name, (self.tasks, self.task_errors))
            return
        source, raw = (self.keys.task_host, host_raw) if host_raw is not None else \
            (self.keys.task_template, template_raw)
        text = self._checked_name("task", "task", name, source, raw)
        if text is None:
            return
        try:
            task = self._parse(model.merge_task, text, template_raw, host_raw, self.tz)
        except model.ModelError as exc:
            self.tasks.pop(text, None)
            self.task_errors[text] = self.report("task", name, source, raw, str(exc))
            return
        self.task_errors.pop(text, None)
        self._reported.pop(("task", _raw_name(name)), None)
        if self.tasks.get(text) != task:
            log.info("task %r loaded (%s): limit=%d enable=%s queue=%r groups=%s",
                     text, task.source, task.limit, task.enable, task.number_queue, ",".join(task.line_groups))
        self.tasks[text] = task

    def _set_entry(self, kind, what, table, errors, key, parse, name, raw):
        """Replace one parsed line, group or schedule config; a bad one is dropped and reported."""
        if raw is None:
            self._forget(kind, name, (table, errors))
            return
        text = self._checked_name(kind, what, name, key, raw)
        if text is None:
            return
        try:
            table[text] = self._parse(parse, text, raw)
        except model.ModelError as exc:
            table.pop(text, None)
            errors[text] = self.report(kind, name, key, raw, str(exc))
            return
        errors.pop(text, None)
        self._reported.pop((kind, _raw_name(name)), None)

    def _set_line(self, name, raw):
        self._set_entry("line", "line", self.lines, self._line_errors, self.keys.lines, model.parse_line,
                        name, raw)

    def _set_group(self, name, raw):
        self._set_entry("group", "line group", self.groups, self._group_errors, self.keys.groups,
                        model.parse_group, name, raw)

    def _set_schedule_config(self, name, raw):
        self._set_entry("schedule_config", "schedule config", self.schedule_configs, self.schedule_config_errors,
                        self.keys.schedule_configs, model.parse_schedule_config, name, raw)

    def report(self, kind, name, source, raw, reason, **extra) -> str:
        """A rejected record for bad configuration or a bad message, once per distinct problem.

        Returns the reason as recorded (cut to MAX_REASON_CHARS). Entries are
        remembered by their name as Redis holds it; messages are not (the
        config watcher limits how many it reports).
        """
        reason = model.raw_repr(reason, MAX_REASON_CHARS)
        memo = (kind, _raw_name(name))
        if kind != "message":
            if self._reported.get(memo) == reason:
                return reason
            self._reported[memo] = reason
        shown = model.raw_repr(name, NAME_SHOWN_CHARS)
        log.error("rejected %s %r from %s: %s", kind, shown, source, reason)
        try:
            self.store.reject({"ts": time.time(), "host": self.keys.host, "kind": kind, "name": shown,
                               "source": source, "raw": model.raw_repr(raw), "reason": reason, **extra})
        except REDIS_ERRORS:
            self._reported.pop(memo, None)
        return reason

    # --- questions ---------------------------------------------------------------------

    def source_of(self, claim: Claim) -> Optional[Source]:
        """The task or schedule config a claim dials for (None once deleted or broken)."""
        if claim.kind == Kind.SCHEDULE:
            return self.schedule_configs.get(claim.source_name)
        return self.tasks.get(claim.source_name)

    def line(self, name: Optional[str]) -> Optional[model.Line]:
        return self.lines.get(name) if name else None

    def candidates(self, source: Source, start_group: int = 0) -> Candidates:
        """The enabled lines of the source's groups from ``start_group`` on, tier by tier, for the claim scripts.

        Every group keeps its position, empty and disabled ones included, so
        the group index the scripts return is the source's group index; a
        group in tiers gives one entry per tier at its position.
        """
        entries, positions, entry_gates, line_gates = [], [], [], {}
        for position, gname in enumerate(source.line_groups[start_group:]):
            group = self.groups.get(gname)
            tiers = group.tiers if group is not None and group.enable else ((),)
            missing = []
            for tier in tiers:
                lines = []
                for lname in tier:
                    line = self.lines.get(lname)
                    if line is not None and line.enable and line.limit > 0:
                        lines.append((lname, line.limit))
                        line_gates[lname] = (line.rest, line.fault_try_interval if line.fault_threshold else 0.0)
                    elif line is None and lname not in self._line_errors:
                        missing.append(lname)
                entries.append(lines)
                positions.append(position)
                entry_gates.append((gname, group.rest if group is not None else 0.0))
            if missing or ("group", _raw_name(gname)) in self._reported:
                self._missing_lines(gname, missing)
        return Candidates(entries, positions, entry_gates, line_gates)

    def _missing_lines(self, group: str, missing: List[str]):
        """A group naming lines that do not exist: reported once (a typo, or a line deleted before its groups)."""
        if not missing:
            self._reported.pop(("group", _raw_name(group)), None)
            return
        self.report("group", group, self.keys.groups, "",
                    "line group %r: line(s) %s not in %s (skipped until they exist)"
                    % (group, ", ".join(repr(n) for n in missing), self.keys.lines))

    def schedule_config_problem(self, name: str) -> str:
        """Why a schedule member naming ``name`` cannot be dialed ("" when it can)."""
        if name in self.schedule_configs:
            return ""
        error = self.schedule_config_errors.get(name)
        if error:
            return "schedule config %r is invalid: %s" % (name, error)
        return "schedule config %r does not exist in %s" % (name, self.keys.schedule_configs)

    def task_state(self, name: str, now: datetime.datetime,
                   candidates: Optional[Candidates] = None) -> Tuple[str, str]:
        """(state, reason) of a task on this host, for dispatch and status records."""
        if name in self.task_errors:
            return "error", self.task_errors[name]
        task = self.tasks.get(name)
        if task is None:
            return "deleted", ""
        if not task.enable:
            return "paused", "enable is false"
        wstate = timewindow.state(task.window, now)
        if wstate == timewindow.State.FINISHED:
            return "finished", "past stop_time"
        if wstate != timewindow.State.OPEN:
            return "waiting", wstate.value
        if not (candidates if candidates is not None else self.candidates(task)):
            return "waiting", "no enabled line in its line groups"
        return "running", ""

