"""What the admin CLI does to Redis: validated writes, each followed by its config_change.

Every write is checked with the same model functions the daemon uses, so a
value the daemon would reject is refused here, with the same reason, before
anything is written.
"""
import csv
import dataclasses
import datetime
import json
import time
import uuid as uuidlib
from typing import Dict, Iterable, Tuple

import orjson

from . import keys as keymod, messages, model
from .model import as_text


class AdminError(Exception):
    """Refused; the message says why (shown to the operator as is)."""


def _json(text):
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise AdminError("not valid JSON: %s" % exc) from None
    if not isinstance(doc, dict):
        raise AdminError("not a JSON object")
    return doc


def parse_time(value, tz) -> float:
    """A unix time from "1700000000", "+90" (seconds from now) or "2026-11-21 14:30[:00]" (in tz)."""
    value = str(value).strip()
    try:
        if value.startswith("+"):
            return time.time() + float(value[1:])
        return float(value)
    except ValueError:
        pass
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"):
        try:
            return datetime.datetime.strptime(value, fmt).replace(tzinfo=tz).timestamp()
        except ValueError:
            continue
    raise AdminError("%r is not a time (unix seconds, +SECONDS or YYYY-MM-DD HH:MM[:SS])" % value)


class Admin:
    def __init__(self, client, config):
        self.r = client
        self.config = config
        self.keys = keymod.Keys(config.dialer_host, config.dialer_domain)
        self.tz = config.dialer_timezone

    # --- notifications ------------------------------------------------------------

    def notify(self, table, key=None, host=None) -> Tuple[str, int]:
        """PUBLISH the config_change daemons listen for; returns (channel, receivers)."""
        try:
            msg = messages.config_change(table, key)
        except messages.BadMessage as exc:
            raise AdminError(str(exc)) from None
        channel = self.keys.channel_for(host)
        return channel, self.r.publish(channel, msg)

    # --- tasks ----------------------------------------------------------------------

    def task_list(self, host=None) -> Dict[str, dict]:
        return {as_text(k): _maybe_json(v) for k, v in sorted(self.r.hgetall(self.keys.tasks_for(host)).items())}

    def task_show(self, name, host=None) -> dict:
        """The template entry, the host entry and the task as that host runs it."""
        host = host or self.config.dialer_host
        template = self.r.hget(self.keys.tasks_for(None), name)
        own = self.r.hget(self.keys.tasks_for(host), name)
        if template is None and own is None:
            raise AdminError("no task %r in %s or %s" % (name, self.keys.tasks_for(None), self.keys.tasks_for(host)))
        out = {"template": _maybe_json(template), "host": _maybe_json(own), "host_name": host}
        try:
            task = model.merge_task(name, template, own, self.tz)
            out["effective"] = {"enable": task.enable, "limit": task.limit, "line_group": list(task.line_groups),
                                "number_queue": task.number_queue, "destination": [task.extension, task.dialplan,
                                                                                    task.context]}
        except model.ModelError as exc:
            out["error"] = str(exc)
        return out

    def task_set(self, name, text, host=None):
        """Validate (merged with the other scope, as the daemon will see it), write, notify."""
        doc = _json(text) if isinstance(text, str) else text
        raw = json.dumps(doc, ensure_ascii=False)
        other_host = host or self.config.dialer_host
        template = raw if host is None else self.r.hget(self.keys.tasks_for(None), name)
        own = raw if host is not None else self.r.hget(self.keys.tasks_for(other_host), name)
        try:
            model.merge_task(name, template, own, self.tz)
        except model.ModelError as exc:
            raise AdminError(str(exc)) from None
        self.r.hset(self.keys.tasks_for(host), name, raw)
        return self.notify(keymod.TASK_TABLE, name, host)

    def task_delete(self, name, host=None):
        if not self.r.hdel(self.keys.tasks_for(host), name):
            raise AdminError("no task %r in %s" % (name, self.keys.tasks_for(host)))
        return self.notify(keymod.TASK_TABLE, name, host)

    def task_enable(self, name, enable, host=None):
        raw = self.r.hget(self.keys.tasks_for(host), name)
        if raw is None:
            if host is None:
                raise AdminError("no task %r in %s" % (name, self.keys.tasks_for(None)))
            doc = {"params": {}}          # switch a template task on or off for one host
        else:
            doc = _json(as_text(raw))
        doc.setdefault("params", {})["enable"] = bool(enable)
        return self.task_set(name, doc, host)

    # --- lines, groups, schedule configs ---------------------------------------------------

    TABLES = {
        "line": (keymod.LINE_TABLE, model.parse_line, "lines"),
        "group": (keymod.GROUP_TABLE, model.parse_group, "groups"),
        "schedule-config": (keymod.SCHEDULE_CONFIG_TABLE, model.parse_schedule_config, "schedule_configs"),
    }

    def _table(self, kind):
        table, parse, attr = self.TABLES[kind]
        return table, parse, getattr(self.keys, attr)

    def entry_list(self, kind) -> Dict[str, object]:
        _, _, key = self._table(kind)
        return {as_text(k): _maybe_json(v) for k, v in sorted(self.r.hgetall(key).items())}

    def entry_show(self, kind, name):
        _, _, key = self._table(kind)
        raw = self.r.hget(key, name)
        if raw is None:
            raise AdminError("no %s %r in %s" % (kind, name, key))
        return _maybe_json(raw)

    def entry_set(self, kind, name, text):
        table, parse, key = self._table(kind)
        doc = _json(text) if isinstance(text, str) else text
        raw = json.dumps(doc, ensure_ascii=False)
        try:
            parse(name, raw)
        except model.ModelError as exc:
            raise AdminError(str(exc)) from None
        self.r.hset(key, name, raw)
        return self.notify(table, name)

    def entry_delete(self, kind, name):
        table, _, key = self._table(kind)
        if not self.r.hdel(key, name):
            raise AdminError("no %s %r in %s" % (kind, name, key))
        return self.notify(table, name)

    def line_enable(self, name, enable):
        doc = self.entry_show("line", name)
        if not isinstance(doc, dict):
            raise AdminError("line %r is not valid JSON; fix it with 'line set'" % name)
        doc.setdefault("params", {})["enable"] = bool(enable)
        return self.entry_set("line", name, doc)

    # --- patches, stop -------------------------------------------------------------------

    def task_patch(self, name, patch, host=None):
        """Apply a JSON merge patch (RFC 7386: null removes a key) to one scope's entry, then task_set."""
        raw = self.r.hget(self.keys.tasks_for(host), name)
        if raw is None and host is None:
            raise AdminError("no task %r in %s" % (name, self.keys.tasks_for(None)))
        doc = {} if raw is None else _json(as_text(raw))
        return self.task_set(name, merge_patch(doc, patch), host)

    def entry_patch(self, kind, name, patch):
        doc = self.entry_show(kind, name)
        if not isinstance(doc, dict):
            raise AdminError("%s %r is not valid JSON; replace it whole" % (kind, name))
        return self.entry_set(kind, name, merge_patch(doc, patch))

    def task_scopes(self, name):
        """The scopes holding an entry of task ``name``: None (the template) first, then host names."""
        hosts = {as_text(h) for h in self.r.smembers(self.keys.hosts)} | {self.config.dialer_host}
        scopes = [None] if self.r.hexists(self.keys.tasks_for(None), name) else []
        scopes += [h for h in sorted(hosts) if self.r.hexists(self.keys.tasks_for(h), name)]
        if not scopes:
            raise AdminError("no task %r" % name)
        return scopes

    def task_switch(self, name, enable, host=None):
        """Pause or resume: one host's entry, or (host None) the template and every host entry of the task.

        A host entry's ``enable`` overrides the template's, so switching the
        template alone would leave such a host dialing (or paused).
        """
        scopes = [host] if host else self.task_scopes(name)
        replies = [self.task_enable(name, enable, scope) for scope in scopes]
        if enable and not host:
            self.r.hdel(self.keys.stopped_tasks, name)
        return replies

    # Queued numbers and pending redials of a stopped task go aside in one
    # step, so a daemon claiming meanwhile takes each number either before
    # (and dials it) or never. RENAME when nothing is aside yet keeps a big
    # queue O(1); otherwise the oldest go first so the aside list stays in
    # dialing order.
    _MOVE_ASIDE = """
local moved = 0
if KEYS[1] == KEYS[2] then
  moved = 0
elseif redis.call('EXISTS', KEYS[2]) == 0 then
  moved = redis.call('LLEN', KEYS[1])
  if moved > 0 then redis.call('RENAME', KEYS[1], KEYS[2]) end
else
  while redis.call('RPOPLPUSH', KEYS[1], KEYS[2]) do moved = moved + 1 end
end
local redials = redis.call('ZCARD', KEYS[3])
if redials > 0 then
  redis.call('ZUNIONSTORE', KEYS[4], 2, KEYS[4], KEYS[3], 'AGGREGATE', 'MAX')
  redis.call('DEL', KEYS[3])
end
return {moved, redials}
"""

    def task_stop(self, name):
        """Pause the task everywhere, then move its queued numbers and pending redials aside.

        Returns (numbers moved, redials moved). Calls already claimed finish;
        a later resume does not dial what was moved (it stays in
        keys.stopped / keys.stopped_redials for the operator).
        """
        scopes = self.task_scopes(name)
        hosts = [s for s in scopes if s] or [self.config.dialer_host]
        queues = set()
        for host in hosts:
            info = self.task_show(name, host)
            if "effective" in info:
                queues.add(info["effective"]["number_queue"])
        self.task_switch(name, False)
        moved = redials = 0
        # A task no host can read has no queue; its redials still go aside.
        for queue in sorted(queues) or [self.keys.stopped(name)]:
            m, rd = self.r.eval(self._MOVE_ASIDE, 4, queue, self.keys.stopped(name), self.keys.retries(name),
                                self.keys.stopped_redials(name))
            moved, redials = moved + m, redials + rd
        self.r.hset(self.keys.stopped_tasks, name, repr(time.time()))
        return moved, redials

    # --- queues ------------------------------------------------------------------------

    def _queue_of(self, task=None, queue=None):
        if queue:
            return queue
        if not task:
            raise AdminError("give --task or --queue")
        info = self.task_show(task)
        if "effective" not in info:
            raise AdminError("task %r is invalid: %s" % (task, info.get("error")))
        return info["effective"]["number_queue"]

    @staticmethod
    def _checked(parse, number, variables, entry_id, **params):
        """A number entry's JSON, checked with the daemon's own parser."""
        params = dict(number=str(number), **params)
        if entry_id is not None:
            params["id"] = str(entry_id)
        doc = {"params": params}
        if variables:
            doc["variables"] = variables
        raw = json.dumps(doc, ensure_ascii=False)
        try:
            parse(raw)
        except model.ModelError as exc:
            raise AdminError(str(exc)) from None
        return raw

    @classmethod
    def entry(cls, number, variables=None, entry_id=None) -> str:
        """A queue entry, checked like the daemon checks it; plain text when it can be."""
        if not variables and entry_id is None:
            try:
                return model.parse_number(str(number)) and str(number)
            except model.ModelError as exc:
                raise AdminError(str(exc)) from None
        return cls._checked(model.parse_number, number, variables, entry_id)

    def queue_push(self, entries: Iterable[str], task=None, queue=None) -> Tuple[str, int]:
        queue = self._queue_of(task, queue)
        entries = list(entries)
        if entries:
            # LPUSH one at a time in file order: the first given is dialed first.
            self.r.lpush(queue, *entries)
        return queue, len(entries)

    # Pushes a batch and keeps the response to replay, in one atomic step: a
    # crash or a lost reply can leave either both or neither, never numbers
    # without the record that stops a retry from adding them again.
    _PUSH_ONCE = """
local prev = redis.call('GET', KEYS[2])
if prev then return {0, prev} end
for i = 3, #ARGV, 1000 do
  redis.call('LPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return {1, ARGV[1]}
"""

    def queue_push_once(self, entries, idempotence_key, record, ttl=86400, task=None, queue=None):
        """queue_push at most once per ``idempotence_key`` (shared by every process on this Redis).

        ``record(queue, count)`` gives the text stored with the key (the
        response to give again). Returns (pushed now, the stored text):
        when the key was used before nothing is pushed and the first
        request's text comes back.
        """
        queue = self._queue_of(task, queue)
        entries = list(entries)
        pushed, text = self.r.eval(self._PUSH_ONCE, 2, queue, self.keys.idempotence(idempotence_key),
                                   record(queue, len(entries)), int(ttl), *entries)
        return bool(pushed), as_text(text)

    def queue_remove(self, task=None, queue=None, numbers=(), entry_ids=()):
        """Take out queued entries whose number is in ``numbers`` or whose params.id is in ``entry_ids``.

        Returns (queue, removed). Each is removed by its exact value, so an
        entry a daemon claimed meanwhile is simply not found.
        """
        queue = self._queue_of(task, queue)
        numbers, ids = {str(n) for n in numbers}, {str(i) for i in entry_ids}
        removed = 0
        for raw in set(self.r.lrange(queue, 0, -1)):
            try:
                entry = model.parse_number(raw)
            except model.ModelError:
                continue
            if entry.number in numbers or (entry.id is not None and entry.id in ids):
                removed += self.r.lrem(queue, 0, raw)
        return queue, removed

    def cancel(self, task, entry_id):
        """Cancel a pending call or redial of ``task`` by entry id (params.id, or a redial's own id).

        Returns (queued entries removed, redials removed).
        """
        _, queued = self.queue_remove(task, entry_ids=[entry_id])
        key, redials = self.keys.retries(task), 0
        for member in self.r.zrange(key, 0, -1):
            try:
                doc = orjson.loads(member)
                entry = model.parse_number(doc["raw"])
            except (orjson.JSONDecodeError, KeyError, TypeError, model.ModelError):
                continue
            if doc.get("id") == entry_id or entry.id == entry_id:
                redials += self.r.zrem(key, member)
        return queued, redials

    def queue_import(self, fh, task=None, queue=None, chunk=1000, progress=None):
        """CSV with a ``number`` column (optional ``id``), other columns become variables.

        Returns (queue, imported, [(line number, reason)]). Good rows are
        imported, bad rows are reported with their line numbers.
        """
        queue = self._queue_of(task, queue)
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "number" not in [f.strip() for f in reader.fieldnames]:
            raise AdminError("the CSV needs a header line with a 'number' column (got %s)" % reader.fieldnames)
        bad, batch, imported = [], [], 0
        for row in reader:
            line = reader.line_num
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None}
            number = row.pop("number", "")
            entry_id = row.pop("id", "") or None
            variables = {k: v for k, v in row.items() if v != ""}
            try:
                batch.append(self.entry(number, variables, entry_id))
            except AdminError as exc:
                bad.append((line, str(exc)))
            if len(batch) >= chunk:
                self.r.lpush(queue, *batch)
                imported += len(batch)
                batch = []
            if progress:
                progress(1)
        if batch:
            self.r.lpush(queue, *batch)
            imported += len(batch)
        return queue, imported, bad

    def queue_export(self, out, task=None, queue=None) -> int:
        """Write the queue as CSV in dialing order (oldest first); returns the row count."""
        queue = self._queue_of(task, queue)
        raws = list(reversed(self.r.lrange(queue, 0, -1)))
        rows, columns = [], ["number", "id"]
        for raw in raws:
            try:
                entry = model.parse_number(raw)
            except model.ModelError:
                rows.append({"number": as_text(raw)})
                continue
            row = {"number": entry.number, "id": entry.id or ""}
            for name, value in entry.variables:
                if name not in columns:
                    columns.append(name)
                row[name] = value
            rows.append(row)
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        return len(rows)

    def queue_length(self, task=None, queue=None) -> Tuple[str, int]:
        queue = self._queue_of(task, queue)
        return queue, self.r.llen(queue)

    # --- schedule ------------------------------------------------------------------------

    def schedule_add(self, number, at, config, expires=0, variables=None, entry_id=None):
        raw = self._checked(model.parse_scheduled, number, variables, entry_id, expires=int(expires or 0),
                            config=config)
        if self.r.hget(self.keys.schedule_configs, config) is None:
            raise AdminError("no schedule config %r in %s" % (config, self.keys.schedule_configs))
        self.r.zadd(self.keys.schedule_numbers, {raw: float(at)})
        return raw

    def schedule_list(self, count=50, due_only=False):
        upper = time.time() if due_only else "+inf"
        return [(float(score), _maybe_json(member)) for member, score in
                self.r.zrangebyscore(self.keys.schedule_numbers, "-inf", upper, start=0, num=count,
                                     withscores=True)]

    def schedule_cancel(self, entry_id):
        """Remove scheduled members (and their redials) whose params.id is ``entry_id``; returns how many."""
        removed = 0
        for member, _ in self.r.zscan_iter(self.keys.schedule_numbers, count=1000):
            try:
                entry = model.parse_scheduled(member)
            except model.ModelError:
                continue
            if entry.entry.id == entry_id:
                removed += self.r.zrem(self.keys.schedule_numbers, member)
        return removed

    # --- do-not-call ---------------------------------------------------------------------------

    @staticmethod
    def _dnc_numbers(numbers):
        numbers = [str(n) for n in numbers]
        for n in numbers:
            try:
                model.parse_number(n)
            except model.ModelError as exc:
                raise AdminError(str(exc)) from None
        return numbers

    def dnc_add(self, numbers) -> int:
        """Add numbers to the do-not-call set (read by daemons at every dial; no notification needed)."""
        numbers = self._dnc_numbers(numbers)
        return self.r.sadd(self.keys.dnc, *numbers) if numbers else 0

    def dnc_remove(self, numbers) -> int:
        numbers = self._dnc_numbers(numbers)
        return self.r.srem(self.keys.dnc, *numbers) if numbers else 0

    # --- status and results -------------------------------------------------------------------

    def status(self) -> Dict[str, dict]:
        hosts = sorted(as_text(h) for h in self.r.smembers(self.keys.hosts)) or [self.config.dialer_host]
        out = {}
        for host in hosts:
            keys = keymod.Keys(host, self.keys.domain)
            daemon = _host_status(self.r.hgetall(keys.status))
            tasks = {as_text(k): _task_status(v) for k, v in self.r.hgetall(keys.task_status).items()}
            alive = bool(self.r.exists(keys.alive()))
            out[host] = {"daemon": daemon, "alive": alive, "tasks": tasks}
        lines = {}
        for name in self.r.hkeys(self.keys.lines):
            lines[as_text(name)] = self.r.zcount(self.keys.line_lease(as_text(name)), time.time(), "+inf")
        # Fault detection's view, shared by every host: lines out of service
        # (until when the next probe may go) and counts of consecutive failures.
        health = messages.parse_line_state(self.r.hgetall(self.keys.line_state))
        faults = {line: {"out_of_service_until": h.get("out"), "consecutive_failures": int(h.get("failures", 0))}
                  for line, h in health.items() if "out" in h or h.get("failures")}
        return {"hosts": out, "lines_in_use": lines, "line_faults": faults}

    def results(self, count=20, task=None, cause=None, after=None):
        """Newest results first (or those after stream id ``after``), filtered."""
        if after is None:
            entries = self.r.xrevrange(self.keys.results, count=max(count * 10, 100) if (task or cause) else count)
        else:
            reply = self.r.xread({self.keys.results: after}, count=1000, block=1000)
            entries = reply[0][1] if reply else []
        out = []
        for entry_id, fields in entries:
            rec = {as_text(k): as_text(v) for k, v in fields.items()}
            rec["_id"] = as_text(entry_id)
            if task and rec.get("task", rec.get("config")) != task:
                continue
            if cause and rec.get("cause") != cause.upper():
                continue
            out.append(rec)
        return out if after is not None else out[:count]

    def last_result_id(self):
        last = self.r.xrevrange(self.keys.results, count=1)
        return as_text(last[0][0]) if last else "0-0"

    # --- test call ------------------------------------------------------------------------------

    def test_call(self, number, task=None, line=None, extension="9999", context="default", timeout=120.0):
        """Dial one number now through a running daemon and wait for its result.

        --task: a JSON entry at the head of the task's queue (dialed next,
        within the task's limit, window and lines). --line: a one-line group
        and a schedule config made for this call, used once and removed.
        """
        call_id = "cti-test-%s" % uuidlib.uuid4().hex[:12]
        start_id = self.last_result_id()
        cleanup = []
        if task:
            queue = self._queue_of(task)
            raw = self.entry(number, None, call_id)
            self.r.rpush(queue, raw)           # the right end is dialed next
            owner = task
        else:
            if self.r.hget(self.keys.lines, line) is None:
                raise AdminError("no line %r in %s" % (line, self.keys.lines))
            group = config = call_id
            self.r.hset(self.keys.groups, group, json.dumps({"lines": [line]}))
            self.r.hset(self.keys.schedule_configs, config, json.dumps(
                {"params": {"line_group": [group], "destination_extension": extension,
                            "destination_context": context}}))
            cleanup = [(self.keys.groups, group, keymod.GROUP_TABLE), (self.keys.schedule_configs, config,
                                                                       keymod.SCHEDULE_CONFIG_TABLE)]
            self.notify(keymod.GROUP_TABLE, group)
            self.notify(keymod.SCHEDULE_CONFIG_TABLE, config)
            # Due a moment from now, so that daemons have read its config.
            self.schedule_add(number, time.time() + 1.0, config, entry_id=call_id)
            owner = config
        try:
            deadline = time.time() + timeout
            after = start_id
            while time.time() < deadline:
                for rec in self.results(after=after):
                    after = rec["_id"]
                    if rec.get("id") == call_id and rec.get("task", rec.get("config")) == owner \
                            and "next_due" not in rec:
                        return rec
            raise AdminError("no result within %ss: is a daemon running and the task enabled?" % timeout)
        finally:
            for key, field, table in cleanup:
                self.r.hdel(key, field)
                self.notify(table, field)


def merge_patch(doc, patch):
    """RFC 7386 JSON merge patch: objects merge key by key, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(doc) if isinstance(doc, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _host_status(fields):
    """Shown as the daemon wrote it; a record this version cannot read is shown as found."""
    try:
        return messages.encode_host_status(messages.decode_host_status(fields))
    except messages.BadMessage:
        return {as_text(k): as_text(v) for k, v in fields.items()}


def _task_status(raw):
    try:
        return dataclasses.asdict(messages.decode_task_status(raw))
    except messages.BadMessage:
        return _maybe_json(raw)


def _maybe_json(raw):
    if raw is None:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return as_text(raw)
