"""Status of tasks, hosts and lines; results by filter, as CSV and as a live feed; results per cause per minute."""
import csv
import io
import time

import orjson
from flask import Response, request
from flask_openapi3 import APIBlueprint, Tag
from pydantic import Field

from ..model import as_text
from . import schemas, status
from .app import ApiError, ctx, json_response
from .config_routes import ERRORS, operation_id

# Results are filtered while the stream is read newest first; one page reads
# at most this many entries, so a filter that matches nothing costs a bounded
# amount and the client goes on with ``next``.
SCAN_PAGE = 1000
SCAN_MAX = 50000
CSV_FIRST = ["_id", "ts", "host", "kind", "task", "config", "number", "id", "cause", "verdict", "answered", "billsec",
             "ring_time", "line", "line_group", "attempt", "try", "uuid", "sent_at", "answered_at", "ended_at"]


class ResultsCsvQuery(schemas.ResultsQuery):
    limit: int = Field(10000, ge=1, le=100000)


def _record(entry_id, fields):
    rec = {as_text(k): as_text(v) for k, v in fields.items()}
    rec["_id"] = as_text(entry_id)
    return rec


def _matches(rec, q):
    if q.task and rec.get("task", rec.get("config")) != q.task:
        return False
    if q.number and rec.get("number") != q.number:
        return False
    if q.id and rec.get("id") != q.id:
        return False
    if q.cause and rec.get("cause") != q.cause.upper():
        return False
    return True


def _bound(t):
    return "%d-0" % max(0, int(t * 1000))


def results_page(q, limit):
    """(records newest first, cursor of the rest or None)."""
    c = ctx()
    key = c.keys.results
    upper = "(" + q.cursor if q.cursor else ("(" + _bound(q.until) if q.until is not None else "+")
    lower = _bound(q.since) if q.since is not None else "-"
    out, scanned = [], 0
    while True:
        batch = c.r.xrevrange(key, max=upper, min=lower, count=SCAN_PAGE)
        for entry_id, fields in batch:
            scanned += 1
            rec = _record(entry_id, fields)
            if _matches(rec, q):
                out.append(rec)
                if len(out) >= limit:
                    return out, rec["_id"]
        if len(batch) < SCAN_PAGE:
            return out, None
        upper = "(" + as_text(batch[-1][0])
        if scanned >= max(SCAN_MAX, limit):
            return out, upper[1:]


def blueprint():
    bp = APIBlueprint("report", __name__, abp_security=[{"bearer": []}], abp_responses=ERRORS,
                      operation_id_callback=operation_id)
    st = [Tag(name="status", description="Hosts, lines and tasks as the daemons report them.")]
    res = [Tag(name="results", description="One record per finished attempt (cti_dialer_result@DOMAIN).")]

    @bp.get("/whoami", tags=[Tag(name="system")], responses={200: schemas.Whoami})
    def whoami():
        """Whether this token is read-only (the console checks a token with it)."""
        from flask import g
        return json_response({"read_only": bool(g.read_only)})

    @bp.get("/hosts", tags=st, responses={200: schemas.HostList})
    def list_hosts():
        """Every host that ever ran a daemon on this domain: heartbeat, state, ESL, calls and lines in use."""
        return json_response({"items": status.host_infos(ctx().r, ctx().config)})

    @bp.get("/hosts/<host>", tags=st, responses={200: schemas.HostInfo})
    def show_host(path: schemas.HostPath):
        """One host, with its tasks as it runs them."""
        c = ctx()
        if not c.r.sismember(c.keys.hosts, path.host) and path.host != c.config.dialer_host:
            raise ApiError(404, "not_found", "no host %r has run a daemon on this domain" % path.host)
        return json_response(status.host_infos(c.r, c.config, only=path.host)[0])

    @bp.get("/tasks/<name>/status", tags=st, responses={200: schemas.TaskStatus})
    def task_status(path: schemas.NamePath, query: schemas.HostQuery):
        """A task's state, calls up vs limit, queued, redials, dialed/answered/failed by cause, total vs processed."""
        found = status.task_statuses(ctx().r, ctx().config, names=[path.name], host=query.host)
        if not found:
            raise ApiError(404, "not_found", "no task %r" % path.name)
        return json_response(found[0])

    @bp.get("/results", tags=res, responses={200: schemas.ResultsPage})
    def list_results(query: schemas.ResultsQuery):
        """Results newest first, filtered by task, number, entry id, cause and time; page with next."""
        items, nxt = results_page(query, query.limit)
        return json_response({"items": items, "next": nxt})

    @bp.get("/results/csv", tags=res, responses={200: {"description": "CSV, newest first.",
                                                       "content": {"text/csv": {"schema": {"type": "string"}}}}})
    def results_csv(query: ResultsCsvQuery):
        """The same results as CSV (up to 100,000 rows a request); the X-Next-Cursor header continues."""
        items, nxt = results_page(query, query.limit)
        columns = [c for c in CSV_FIRST if any(c in rec for rec in items[:1000])]
        for rec in items:
            for k in rec:
                if k not in columns:
                    columns.append(k)
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns or CSV_FIRST, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(items)
        headers = {"Content-Disposition": 'attachment; filename="results.csv"'}
        if nxt:
            headers["X-Next-Cursor"] = nxt
        return Response(out.getvalue(), mimetype="text/csv", headers=headers)

    @bp.get("/results/stream", tags=res,
            responses={200: {"description": "Server-sent events: `event: result` with the record as JSON, "
                                            "`id:` its stream id (send it back as Last-Event-ID to resume); "
                                            "`: keepalive` comments.",
                             "content": {"text/event-stream": {"schema": {"type": "string"}}}}})
    def results_stream(query: schemas.StreamQuery):
        """Live feed of new results (text/event-stream), optionally for one task."""
        c = ctx()
        last = request.headers.get("Last-Event-ID", "")
        if not _is_stream_id(last):
            last = c.admin.last_result_id()
        return Response(_feed(c, last, query.task), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @bp.get("/stats/causes", tags=res, responses={200: schemas.CauseStats})
    def cause_stats(query: schemas.CausesQuery):
        """Results per cause per minute over the last N minutes (for charts)."""
        c = ctx()
        now = time.time()
        first = int((now - query.minutes * 60) // 60 * 60)
        buckets = {t: {} for t in range(first, int(now // 60 * 60) + 1, 60)}
        lower = _bound(first)
        while True:
            batch = c.r.xrange(c.keys.results, min=lower, max="+", count=5000)
            for entry_id, fields in batch:
                rec = {as_text(k): as_text(v) for k, v in fields.items() if k in (b"ts", b"cause", b"task", b"config")}
                if query.task and rec.get("task", rec.get("config")) != query.task:
                    continue
                try:
                    t = int(float(rec.get("ts") or 0) // 60 * 60)
                except ValueError:
                    continue
                if t in buckets:
                    cause = rec.get("cause") or "UNKNOWN"
                    buckets[t][cause] = buckets[t].get(cause, 0) + 1
            if len(batch) < 5000:
                break
            lower = "(" + as_text(batch[-1][0])
        return json_response({"buckets": [{"t": t, "causes": v} for t, v in sorted(buckets.items())]})

    return bp


def _is_stream_id(text):
    left, sep, right = text.partition("-")
    return bool(sep) and left.isdigit() and right.isdigit()


def _feed(c, last, task):
    keepalive = c.config.api_keepalive
    # A blocking read must end before the client's socket timeout would.
    block_ms = max(100, int(min(keepalive, max(0.5, c.config.redis_socket_timeout - 1)) * 1000))
    key = c.keys.results
    yield ": connected\n\n"
    quiet_since = time.monotonic()
    while True:
        reply = c.r.xread({key: last}, count=500, block=block_ms)
        chunks = []
        for entry_id, fields in (reply[0][1] if reply else []):
            rec = _record(entry_id, fields)
            last = rec["_id"]
            if task and rec.get("task", rec.get("config")) != task:
                continue
            chunks.append("id: %s\nevent: result\ndata: %s\n\n" % (last, orjson.dumps(rec).decode()))
        if chunks:
            quiet_since = time.monotonic()
            yield "".join(chunks)
        elif time.monotonic() - quiet_since >= keepalive:
            quiet_since = time.monotonic()
            yield ": keepalive\n\n"
