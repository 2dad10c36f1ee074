"""A task's numbers (batches with an Idempotence-Key, CSV in and out, removal) and its control (pause, resume,
stop, cancel)."""
import hashlib
import io

import orjson
from flask import Response, request
from flask_openapi3 import APIBlueprint, RawModel, Tag

from ..admin import AdminError
from . import schemas
from .app import ApiError, ctx, json_response
from .config_routes import ERRORS, operation_id, notified

# A batch with faults is refused whole; this many of its faults are listed.
MAX_DETAILS = 100


class CsvBody(RawModel):
    mimetypes = ["text/csv"]


CSV_RESPONSE = {"description": "CSV: a number column, id, then one column per variable.",
                "content": {"text/csv": {"schema": {"type": "string"}}}}


def fingerprint(body_doc) -> str:
    """Of the request as a client means it: the path and the parsed body (whitespace and key order aside)."""
    text = orjson.dumps(body_doc, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(request.path.encode() + b"\n" + text).hexdigest()


def checked_entries(items):
    """Queue entries for a JSON batch, each checked like the daemon checks it; ApiError 400 naming every fault."""
    admin = ctx().admin
    entries, details = [], []
    for i, item in enumerate(items):
        try:
            if isinstance(item, (str, int)):
                entries.append(admin.entry(str(item)))
            else:
                entries.append(admin.entry(str(item.number), item.variables, item.id))
        except AdminError as exc:
            details.append({"field": "[%d]" % i, "reason": str(exc)})
    if details:
        raise ApiError(400, "invalid", "%d of %d entries are refused; nothing was added" % (len(details), len(items)),
                       details[:MAX_DETAILS])
    return entries


def blueprint():
    bp = APIBlueprint("control", __name__, abp_security=[{"bearer": []}], abp_responses=ERRORS,
                      operation_id_callback=operation_id)
    numbers = [Tag(name="numbers", description="A task's number queue.")]
    control = [Tag(name="control", description="Pause, resume, stop, cancel.")]

    @bp.post("/tasks/<name>/numbers", tags=numbers, responses={201: schemas.NumbersAdded})
    def add_numbers(path: schemas.NamePath, header: schemas.IdempotenceHeader, body: schemas.NumbersIn):
        """Add a batch to the task's queue, in dialing order; all or nothing.

        With an Idempotence-Key header the batch is added at most once in 24 hours: the same key and body give
        the first response again (header Idempotent-Replayed: true) and add nothing; the same key with another
        body (or another task) gives 409.
        """
        c = ctx()
        items = body.root
        if len(items) > c.config.api_max_batch:
            raise ApiError(413, "too_large", "%d numbers in one batch; at most %d ([api] max_batch)"
                           % (len(items), c.config.api_max_batch))
        entries = checked_entries(items)
        key = header.idempotence_key
        if key is None:
            queue, count = c.admin.queue_push(entries, task=path.name)
            return json_response({"task": path.name, "queue": queue, "added": count}, 201)
        fp = fingerprint(orjson.loads(request.get_data(cache=True) or b"null"))

        def record(queue, count):
            return orjson.dumps({"fingerprint": fp, "status": 201,
                                 "body": {"task": path.name, "queue": queue, "added": count}}).decode()

        pushed, text = c.admin.queue_push_once(entries, key, record, c.config.api_idempotence_ttl, task=path.name)
        first = orjson.loads(text)
        if first.get("fingerprint") != fp:
            raise ApiError(409, "conflict", "this Idempotence-Key was used with another request in the last %d s"
                           % c.config.api_idempotence_ttl, [{"field": "Idempotence-Key", "reason": "reused"}])
        headers = {} if pushed else {"Idempotent-Replayed": "true"}
        return json_response(first["body"], first["status"], headers)

    @bp.post("/tasks/<name>/numbers/csv", tags=numbers, responses={200: schemas.CsvImported})
    def import_csv(path: schemas.NamePath, raw: CsvBody):
        """Import a CSV body (Content-Type: text/csv): a number column, an optional id, other columns become
        variables. Good rows are imported; each bad row is listed with its line number and reason."""
        c = ctx()
        try:
            text = request.get_data(cache=False).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ApiError(400, "invalid", "the CSV is not UTF-8: %s" % exc, [{"field": "body", "reason": str(exc)}])
        rows = max(0, text.count("\n") - 1)
        if rows > c.config.api_max_batch:
            raise ApiError(413, "too_large", "about %d rows; at most %d in one upload ([api] max_batch)"
                           % (rows, c.config.api_max_batch))
        try:
            queue, imported, bad = c.admin.queue_import(io.StringIO(text, newline=""), task=path.name)
        except AdminError as exc:
            if "CSV" in str(exc):
                raise ApiError(400, "invalid", str(exc), [{"field": "body", "reason": str(exc)}])
            raise
        return json_response({"queue": queue, "imported": imported,
                              "errors": [{"row": line, "reason": reason} for line, reason in bad]})

    @bp.get("/tasks/<name>/numbers/csv", tags=numbers, responses={200: CSV_RESPONSE})
    def export_csv(path: schemas.NamePath):
        """The task's queue as CSV, in dialing order (oldest first)."""
        out = io.StringIO()
        ctx().admin.queue_export(out, task=path.name)
        return Response(out.getvalue(), mimetype="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="%s.csv"' % _safe(path.name)})

    @bp.get("/tasks/<name>/queue", tags=numbers, responses={200: schemas.QueueLength})
    def queue_length(path: schemas.NamePath):
        """How many numbers wait in the task's queue."""
        queue, length = ctx().admin.queue_length(task=path.name)
        return json_response({"queue": queue, "length": length})

    @bp.post("/tasks/<name>/numbers/remove", tags=numbers, responses={200: schemas.Removed})
    def remove_numbers(path: schemas.NamePath, body: schemas.NumbersRemove):
        """Take queued numbers out, by number or by entry id (params.id)."""
        if not body.numbers and not body.ids:
            raise ApiError(400, "invalid", "give numbers or ids", [{"field": "numbers", "reason": "empty"}])
        queue, removed = ctx().admin.queue_remove(task=path.name, numbers=[str(n) for n in body.numbers],
                                                  entry_ids=body.ids)
        return json_response({"queue": queue, "removed": removed})

    def switch(name, host, enable):
        replies = ctx().admin.task_switch(name, enable, host)
        return json_response({"name": name, "enable": enable, "notified": notified(replies)})

    @bp.post("/tasks/<name>/pause", tags=control, responses={200: schemas.Switched})
    def pause_task(path: schemas.NamePath, query: schemas.HostQuery):
        """Stop starting new calls (enable false) in the template and every host entry, or on ?host= only.
        Calls up finish; the queue is kept."""
        return switch(path.name, query.host, False)

    @bp.post("/tasks/<name>/resume", tags=control, responses={200: schemas.Switched})
    def resume_task(path: schemas.NamePath, query: schemas.HostQuery):
        """Start dialing again (enable true) everywhere, or on ?host= only. Numbers a stop moved aside stay aside."""
        return switch(path.name, query.host, True)

    @bp.post("/tasks/<name>/stop", tags=control, responses={200: schemas.Stopped})
    def stop_task(path: schemas.NamePath):
        """Pause everywhere and move the queued numbers and pending redials aside, so a later resume does not dial
        them. Calls already claimed finish."""
        moved, redials = ctx().admin.task_stop(path.name)
        return json_response({"name": path.name, "enable": False, "moved": moved + redials,
                              "moved_numbers": moved, "moved_redials": redials})

    @bp.post("/tasks/<name>/cancel", tags=control, responses={200: schemas.Cancelled})
    def cancel_call(path: schemas.NamePath, body: schemas.CancelIn):
        """Cancel a pending call (queued) or redial of the task by entry id; 404 when none is pending."""
        queued, redials = ctx().admin.cancel(path.name, body.id)
        if not queued and not redials:
            raise ApiError(404, "not_found", "no queued number or pending redial of %r has id %r"
                           % (path.name, body.id))
        return json_response({"id": body.id, "queued": queued, "redials": redials})

    return bp


def _safe(name):
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
