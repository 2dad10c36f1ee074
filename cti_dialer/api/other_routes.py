"""Scheduled calls, a direct test call, and the do-not-call set."""
import time

from flask_openapi3 import APIBlueprint, Tag

from .. import model
from ..admin import AdminError, parse_time
from ..model import as_text
from . import schemas
from .app import ApiError, ctx, json_response
from .config_routes import ERRORS, operation_id


def _scheduled(member, score):
    doc = {"at": float(score), "number": as_text(member)[:64], "id": None, "config": "", "expires": 0,
           "variables": {}, "member": None}
    try:
        entry = model.parse_scheduled(member)
    except model.ModelError:
        doc["member"] = as_text(member)[:2000]
        return doc
    doc.update(number=entry.entry.number, id=entry.entry.id, config=entry.config, expires=entry.expires,
               variables=dict(entry.entry.variables))
    return doc


def blueprint():
    bp = APIBlueprint("other", __name__, abp_security=[{"bearer": []}], abp_responses=ERRORS,
                      operation_id_callback=operation_id)
    sched = [Tag(name="schedule", description="Calls at a given time (cti_schedule_dialer_number@DOMAIN).")]
    dnc = [Tag(name="dnc", description="The do-not-call set (cti_dnc@DOMAIN), read by daemons at every dial.")]

    @bp.post("/schedule", tags=sched, responses={201: schemas.ScheduledCall})
    def add_scheduled(body: schemas.ScheduleIn):
        """Schedule one call with a schedule config's lines, destination and variables."""
        c = ctx()
        try:
            at = parse_time(body.at, c.admin.tz)
        except AdminError as exc:
            raise ApiError(400, "invalid", str(exc), [{"field": "at", "reason": str(exc)}])
        try:
            expires = parse_time(body.expires, c.admin.tz) if body.expires not in (None, 0, "0", "") else 0
        except AdminError as exc:
            raise ApiError(400, "invalid", str(exc), [{"field": "expires", "reason": str(exc)}])
        try:
            raw = c.admin.schedule_add(str(body.number), at, body.config, expires, body.variables, body.id)
        except AdminError as exc:
            text = str(exc)
            field = "config" if text.startswith("no schedule config") else None
            if field:
                raise ApiError(400, "invalid", text, [{"field": field, "reason": text}])
            raise
        return json_response(_scheduled(raw.encode(), at), 201)

    @bp.get("/schedule", tags=sched, responses={200: schemas.ScheduleList})
    def list_scheduled(query: schemas.ScheduleQuery):
        """Scheduled calls, earliest first: all, only those due, or only future ones."""
        c = ctx()
        now = time.time()
        lo, hi = {"all": ("-inf", "+inf"), "due": ("-inf", now), "future": ("(%r" % now, "+inf")}[query.when]
        key = c.keys.schedule_numbers
        members = c.r.zrangebyscore(key, lo, hi, start=query.offset, num=query.limit, withscores=True)
        return json_response({"items": [_scheduled(m, s) for m, s in members], "total": c.r.zcount(key, lo, hi)})

    @bp.delete("/schedule/<id>", tags=sched, responses={200: schemas.Removed})
    def cancel_scheduled(path: schemas.IdPath):
        """Cancel the scheduled call(s) with this entry id (params.id); 404 when there is none."""
        removed = ctx().admin.schedule_cancel(path.id)
        if not removed:
            raise ApiError(404, "not_found", "no scheduled call has id %r" % path.id)
        return json_response({"removed": removed})

    @bp.post("/calls", tags=[Tag(name="calls")], responses={200: schemas.CallOut})
    def test_call(body: schemas.CallIn):
        """Dial one number now through a running daemon (a task's queue head, or one line) and wait for the
        outcome, as `cti-dialer call` does. 504 when no result comes within timeout."""
        if bool(body.task) == bool(body.line):
            raise ApiError(400, "invalid", "give exactly one of task and line",
                           [{"field": "task", "reason": "give exactly one of task and line"}])
        c = ctx()
        if body.task:
            c.admin.task_show(body.task)          # 404 before anything is written
        try:
            rec = c.admin.test_call(str(body.number), task=body.task, line=body.line, extension=body.extension,
                                    context=body.context, timeout=body.timeout)
        except AdminError as exc:
            if str(exc).startswith("no result within"):
                raise ApiError(504, "timeout", str(exc))
            raise
        return json_response({"answered": rec.get("answered") == "1", "result": rec})

    @bp.get("/dnc", tags=dnc, responses={200: schemas.DncPage})
    def list_dnc(query: schemas.DncQuery):
        """The do-not-call numbers, a page at a time (SSCAN: go on with next until it is null)."""
        c = ctx()
        cursor, members = c.r.sscan(c.keys.dnc, cursor=query.cursor, count=query.count)
        return json_response({"items": sorted(as_text(m) for m in members), "next": int(cursor) or None,
                              "total": c.r.scard(c.keys.dnc)})

    @bp.post("/dnc", tags=dnc, responses={200: schemas.DncChanged})
    def add_dnc(body: schemas.DncIn):
        """Add numbers to the do-not-call set; a number on it is never dialed (cause DNC_LISTED)."""
        return json_response({"added": ctx().admin.dnc_add(_numbers(body))})

    @bp.post("/dnc/remove", tags=dnc, responses={200: schemas.DncChanged})
    def remove_dnc(body: schemas.DncIn):
        """Take numbers off the do-not-call set."""
        return json_response({"removed": ctx().admin.dnc_remove(_numbers(body))})

    @bp.get("/dnc/<number>", tags=dnc, responses={200: schemas.DncCheck})
    def check_dnc(path: schemas.DncPath):
        """Whether a number is on the do-not-call set."""
        c = ctx()
        return json_response({"number": path.number, "listed": bool(c.r.sismember(c.keys.dnc, path.number))})

    @bp.delete("/dnc/<number>", tags=dnc, responses={200: schemas.DncChanged})
    def delete_dnc(path: schemas.DncPath):
        """Take one number off the do-not-call set."""
        return json_response({"removed": ctx().admin.dnc_remove([path.number])})

    return bp


def _numbers(body):
    numbers = [str(n) for n in body.numbers]
    details = []
    for i, n in enumerate(numbers):
        try:
            model.parse_number(n)
        except model.ModelError as exc:
            details.append({"field": "numbers[%d]" % i, "reason": str(exc)})
    if details:
        raise ApiError(400, "invalid", "%d number(s) refused; nothing was changed" % len(details), details[:100])
    return numbers

