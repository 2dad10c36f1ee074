"""What the API reports: task, host and line status, read from the keys daemons write.

Read-only. A task's figures are put together from the records every daemon
already keeps (its status per host, the cross-host counters, the queue and
the redial set), each read in one pipelined round trip, so a status costs a
few Redis calls however many tasks or hosts there are.
"""
import datetime
import time
from typing import Dict, List, Optional

import orjson

from .. import keys as keymod, messages, model
from ..admin import _host_status, _task_status
from ..model import as_text


def hosts(r, keys, config) -> List[str]:
    return sorted(as_text(h) for h in r.smembers(keys.hosts)) or [config.dialer_host]


def task_names(r, keys, host_list) -> List[str]:
    pipe = r.pipeline(transaction=False)
    pipe.hkeys(keys.tasks_for(None))
    for host in host_list:
        pipe.hkeys(keys.tasks_for(host))
    names = set()
    for reply in pipe.execute():
        names.update(as_text(n) for n in reply)
    return sorted(names)


def _merged(name, template, own, tz):
    try:
        return model.merge_task(name, template, own, tz), None
    except model.ModelError as exc:
        return None, str(exc)


def task_statuses(r, config, names: Optional[List[str]] = None, host: Optional[str] = None) -> List[dict]:
    """TaskStatus dicts for ``names`` (every task when None), as seen on ``host`` or on every host.

    Two pipelined round trips: one HMGET per hash for all the tasks at once
    plus two commands per task (its counters and its redial count), then the
    queue lengths (and what a stop moved aside, for stopped tasks).
    """
    keys = keymod.Keys(config.dialer_host, config.dialer_domain)
    host_list = [host] if host else hosts(r, keys, config)
    if names is None:
        names = task_names(r, keys, host_list)
    if not names:
        return []
    pipe = r.pipeline(transaction=False)
    pipe.hmget(keys.tasks_for(None), names)
    pipe.hmget(keys.stopped_tasks, names)
    for h in host_list:
        pipe.hmget(keys.tasks_for(h), names)
        pipe.hmget(keymod.Keys(h, keys.domain).task_status, names)
        pipe.exists(keys.alive(h))
    for name in names:
        pipe.hgetall(keys.counters(name))
        pipe.zcard(keys.retries(name))
    replies = pipe.execute()
    templates, stopped = replies[0], replies[1]
    per_host = [replies[2 + 3 * j:5 + 3 * j] for j in range(len(host_list))]
    per_task = replies[2 + 3 * len(host_list):]
    now_dt = datetime.datetime.now(datetime.timezone.utc)
    partial = []
    for i, name in enumerate(names):
        template = templates[i]
        counters, redials = per_task[2 * i], per_task[2 * i + 1]
        counters = {as_text(k): as_text(v) for k, v in counters.items()}
        enable, limit, queues, errors, finished, host_states = False, 0, set(), [], True, {}
        exists = template is not None
        for h, (owns, raw_statuses, alive) in zip(host_list, per_host):
            own = owns[i]
            if template is None and own is None:
                continue
            exists = True
            task, error = _merged(name, template, own, config.dialer_timezone)
            if task is None:
                errors.append(error)
                finished = False
                continue
            queues.add(task.number_queue)
            enable = enable or task.enable
            limit += task.limit
            if not (task.window.stop is not None and task.window.stop <= now_dt):
                finished = False
            if raw_statuses[i] is not None and alive:
                st = _task_status(raw_statuses[i])
                if isinstance(st, dict):
                    host_states[h] = st
        if exists:
            partial.append((name, counters, redials, enable, limit, queues, errors, finished, host_states,
                            stopped[i]))
    pipe = r.pipeline(transaction=False)
    all_queues = sorted({q for p in partial for q in p[5]})
    for q in all_queues:
        pipe.llen(q)
    was_stopped = [p[0] for p in partial if p[9] is not None]
    for name in was_stopped:
        pipe.llen(keys.stopped(name))
        pipe.zcard(keys.stopped_redials(name))
    replies = pipe.execute() if all_queues or was_stopped else []
    lengths = dict(zip(all_queues, replies))
    rest = replies[len(all_queues):]
    aside = {name: rest[2 * k] + rest[2 * k + 1] for k, name in enumerate(was_stopped)}
    return [_task_status_doc(*p, aside.get(p[0], 0), lengths) for p in partial]


def _int(counters, key):
    try:
        return int(counters.get(key, 0))
    except ValueError:
        return 0


def _task_status_doc(name, counters, redials, enable, limit, queues, errors, finished, host_states, stopped_at,
                     aside, lengths):
    queued = sum(lengths.get(q, 0) for q in queues)
    calls_up = sum(int(s.get("active") or 0) for s in host_states.values())
    results = _int(counters, "results")
    answered = _int(counters, "answered")
    processed = max(0, results - _int(counters, "redials_scheduled"))
    failed_by_cause = {k[len("cause:"):]: _int(counters, k) for k in counters if k.startswith("cause:")}
    left = queued + redials + calls_up
    stopped = stopped_at is not None and not enable
    completed = left == 0 and (stopped or finished) and not errors
    reasons = sorted({s.get("reason") or "" for s in host_states.values()} - {""})
    states = {s.get("state") for s in host_states.values()}
    if errors and not queues:
        state = "error"
    elif stopped:
        state = "stopped"
    elif completed:
        state = "completed"
    elif not enable:
        state = "paused"
    elif "running" in states:
        state = "running"
    elif "waiting" in states:
        state = "waiting"
    elif "finished" in states or finished:
        state = "completed" if left == 0 else "waiting"
    elif "error" in states:
        state = "error"
    else:
        state = "unknown"
    if errors:
        reasons = errors + reasons
    return {
        "name": name, "state": state, "enable": enable, "calls_up": calls_up, "limit": limit, "queued": queued,
        "pending_redials": redials, "dialed": _int(counters, "originates"), "answered": answered,
        "failed": _int(counters, "failed"), "failed_by_cause": failed_by_cause,
        "total": processed + left, "processed": processed,
        "answer_rate": round(answered / processed, 4) if processed else 0.0, "completed": completed,
        "queue": ",".join(sorted(queues)) or None, "reason": "; ".join(reasons)[:500],
        "hosts": {h: s.get("state", "unknown") for h, s in host_states.items()},
        "stopped_at": float(stopped_at) if stopped_at is not None else None, "stopped_aside": aside,
    }


def line_leases(r, keys, names) -> Dict[str, int]:
    now = time.time()
    pipe = r.pipeline(transaction=False)
    for name in names:
        pipe.zcount(keys.line_lease(name), now, "+inf")
    return dict(zip(names, pipe.execute())) if names else {}


def lines(r, config) -> List[dict]:
    keys = keymod.Keys(config.dialer_host, config.dialer_domain)
    raw = {as_text(k): v for k, v in r.hgetall(keys.lines).items()}
    names = sorted(raw)
    in_use = line_leases(r, keys, names)
    health = messages.parse_line_state(r.hgetall(keys.line_state))
    out = []
    for name in names:
        state = health.get(name, {})
        out_until = state.get("out")
        doc = {"name": name, "enable": False, "capacity": 0, "in_use": in_use[name],
               "faulted": out_until is not None, "out_of_service_until": out_until,
               "consecutive_failures": int(state.get("failures", 0)),
               "error": None, "config": _maybe_json(raw[name])}
        try:
            line = model.parse_line(name, raw[name])
            doc.update(enable=line.enable, capacity=line.limit)
        except model.ModelError as exc:
            doc.update(faulted=True, error=str(exc))
        out.append(doc)
    return out


def host_infos(r, config, only: Optional[str] = None) -> List[dict]:
    keys = keymod.Keys(config.dialer_host, config.dialer_domain)
    host_list = [only] if only else hosts(r, keys, config)
    line_names = sorted(as_text(n) for n in r.hkeys(keys.lines))
    pipe = r.pipeline(transaction=False)
    for h in host_list:
        hk = keymod.Keys(h, keys.domain)
        pipe.hgetall(hk.status)
        pipe.exists(hk.alive())
        pipe.hgetall(hk.task_status)
        pipe.hvals(hk.inflight)
    replies = pipe.execute()
    per_host_lines = _lines_by_host(replies, host_list, line_names)
    out = []
    for i, h in enumerate(host_list):
        fields, alive, task_status, _ = replies[4 * i:4 * i + 4]
        d = _host_status(fields) if fields else {}
        out.append({
            "host": h, "alive": bool(alive), "heartbeat": _float(d.get("heartbeat")),
            "state": (d.get("state") or "unknown") if alive else "down", "esl": d.get("esl") or "unknown",
            # The daemon writes this record only while it reaches Redis; the API read it, so Redis is up.
            "redis": "ok", "calls_up": int(_float(d.get("active_calls"))),
            "lines_in_use": per_host_lines[h], "version": d.get("version") or "", "pid": int(_float(d.get("pid"))),
            "started_at": _float(d.get("started_at")), "rss_kb": int(_float(d.get("rss_kb"))),
            "tasks": {as_text(k): _task_status(v) for k, v in task_status.items()},
        })
    return out


def _lines_by_host(replies, host_list, line_names):
    """Calls up per line on each host, from the host's in-flight records (the leases are shared by all hosts)."""
    out = {}
    for i, h in enumerate(host_list):
        counts = {}
        for raw in replies[4 * i + 3]:
            line = _inflight_line(raw)
            if line:
                counts[line] = counts.get(line, 0) + 1
        out[h] = counts
    return out


def _inflight_line(raw):
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    line = doc.get("line")
    return line if isinstance(line, str) and line else None


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _maybe_json(raw):
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return as_text(raw)
