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
from typing import Dict, Iterable, Optional, Tuple, Union

import gevent.event

from . import keys as keymod, model, timewindow
from .claim import Claim, Kind
from .messages import ConfigChange
from .model import as_text
from .runtime import REDIS_ERRORS, Wakeups
from .store import Candidates

log = logging.getLogger("cti_dialer")

Source = Union[model.Task, model.ScheduleConfig]


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
        self.loaded = gevent.event.Event()
        self._last_full_read = 0.0
        self._reported: Dict[Tuple[str, str], str] = {}
        self.wakeups = wakeups

    # --- component --------------------------------------------------------------

    def initialize(self):
        self.reload_all()

    def loop(self, now: float) -> float:
        """Reread everything every ``reload_interval`` (pub/sub can drop messages); returns the wait."""
        due = self._last_full_read + self.reload_interval
        if now >= due:
            self.reload_all(now)
            due = now + self.reload_interval
        return max(0.0, due - now)

    def shutdown(self):
        pass

    # --- reading -------------------------------------------------------------------

    def reload_all(self, now: Optional[float] = None) -> None:
        """Reread every task, line, group and schedule config (after a reconnect and on a timer)."""
        template, host = self.store.read_tasks()
        tables = ((self.store.read_lines(), self.lines, {}, self._set_line),
                  (self.store.read_groups(), self.groups, {}, self._set_group),
                  (self.store.read_schedule_configs(), self.schedule_configs, self.schedule_config_errors,
                   self._set_schedule_config))
        for raw_table, known, errors, setter in tables:
            names = {as_text(n) for n in raw_table}
            for name in (set(known) | set(errors)) - names:
                setter(name, None)
            for name, raw in raw_table.items():
                setter(name, raw)
        names = {as_text(n) for n in template} | {as_text(n) for n in host}
        for name in (set(self.tasks) | set(self.task_errors)) - names:
            self._set_task(name, None, None)
        for name in sorted(names):
            self._set_task(name, template.get(name.encode()), host.get(name.encode()))
        self._last_full_read = now if now is not None else time.time()
        self.loaded.set()
        self.wakeups.everything()

    def apply(self, change: ConfigChange) -> None:
        """Reread what one config_change names, and wake who it concerns."""
        if change.key is None:
            self.reload_all()
            return
        if change.table == keymod.TASK_TABLE:
            self._set_task(change.key, *self.store.read_task(change.key))
            self.wakeups.task(change.key)
            return
        read, setter = {
            keymod.LINE_TABLE: (self.store.read_line, self._set_line),
            keymod.GROUP_TABLE: (self.store.read_group, self._set_group),
            keymod.SCHEDULE_CONFIG_TABLE: (self.store.read_schedule_config, self._set_schedule_config),
        }[change.table]
        setter(change.key, read(change.key))
        self.wakeups.everything()

    def _parse(self, parse, *args):
        """Run a model parser; any failure, even an unexpected one, is a ModelError."""
        try:
            return parse(*args)
        except model.ModelError:
            raise
        except Exception as exc:
            log.exception("unexpected error reading %r", args[0])
            raise model.ModelError("cannot be read: %s: %s" % (type(exc).__name__, exc)) from None

    def _set_task(self, name, template_raw, host_raw):
        name = as_text(name)
        try:
            task = self._parse(model.merge_task, name, template_raw, host_raw, self.tz)
        except model.ModelError as exc:
            self.task_errors[name] = str(exc)
            self.tasks.pop(name, None)
            source = self.keys.task_host if host_raw is not None else self.keys.task_template
            self.report("task", name, source, host_raw if host_raw is not None else template_raw, str(exc))
            return
        self.task_errors.pop(name, None)
        self._reported.pop(("task", name), None)
        if task is None:
            self.tasks.pop(name, None)
            return
        if self.tasks.get(name) != task:
            log.info("task %r loaded (%s): limit=%d enable=%s queue=%r groups=%s",
                     name, task.source, task.limit, task.enable, task.number_queue, ",".join(task.line_groups))
        self.tasks[name] = task

    def _set_entry(self, kind, table, errors, key, parse, name, raw):
        """Replace one parsed line, group or schedule config; a bad one is dropped and reported."""
        name = as_text(name)
        if raw is None:
            table.pop(name, None)
            errors.pop(name, None)
            self._reported.pop((kind, name), None)
            return
        try:
            table[name] = self._parse(parse, name, raw)
            errors.pop(name, None)
            self._reported.pop((kind, name), None)
        except model.ModelError as exc:
            table.pop(name, None)
            errors[name] = str(exc)
            self.report(kind, name, key, raw, str(exc))

    def _set_line(self, name, raw):
        self._set_entry("line", self.lines, {}, self.keys.lines, model.parse_line, name, raw)

    def _set_group(self, name, raw):
        self._set_entry("group", self.groups, {}, self.keys.groups, model.parse_group, name, raw)

    def _set_schedule_config(self, name, raw):
        self._set_entry("schedule_config", self.schedule_configs, self.schedule_config_errors,
                        self.keys.schedule_configs, model.parse_schedule_config, name, raw)

    def report(self, kind, name, source, raw, reason):
        """A rejected record for bad configuration or a bad message, once per distinct problem."""
        if kind != "message":
            if self._reported.get((kind, name)) == reason:
                return
            self._reported[(kind, name)] = reason
        log.error("rejected %s %r from %s: %s", kind, name, source, reason)
        try:
            self.store.reject({"ts": time.time(), "host": self.keys.host, "kind": kind, "name": name,
                               "source": source, "raw": model.raw_repr(raw), "reason": reason})
        except REDIS_ERRORS:
            self._reported.pop((kind, name), None)

    # --- questions ---------------------------------------------------------------------

    def task_names(self) -> Iterable[str]:
        return list(self.tasks)

    def source_of(self, claim: Claim) -> Optional[Source]:
        """The task or schedule config a claim dials for (None once deleted or broken)."""
        if claim.kind == Kind.SCHEDULE:
            return self.schedule_configs.get(claim.source_name)
        return self.tasks.get(claim.source_name)

    def line(self, name: Optional[str]) -> Optional[model.Line]:
        return self.lines.get(name) if name else None

    def candidates(self, source: Source, start_group: int = 0) -> Candidates:
        """The enabled lines of the source's groups from ``start_group`` on, for the claim scripts."""
        groups = []
        for gname in source.line_groups[start_group:]:
            group = self.groups.get(gname)
            lines = []
            if group is not None:
                for lname in group.lines:
                    line = self.lines.get(lname)
                    if line is not None and line.enable and line.limit > 0:
                        lines.append((lname, line.limit))
            groups.append(lines)
        # Groups keep their positions (empty ones included) so the group
        # index the scripts return is the source's group index.
        return Candidates(groups)

    def schedule_config_problem(self, name: str) -> str:
        """Why a schedule member naming ``name`` cannot be dialed ("" when it can)."""
        if name in self.schedule_configs:
            return ""
        error = self.schedule_config_errors.get(name)
        if error:
            return "schedule config %r is invalid: %s" % (name, error)
        return "schedule config %r does not exist in %s" % (name, self.keys.schedule_configs)

    def task_state(self, name: str, now: datetime.datetime) -> Tuple[str, str]:
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
        if not self.candidates(task):
            return "waiting", "no enabled line in its line groups"
        return "running", ""

