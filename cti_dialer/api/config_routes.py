"""Tasks, lines, line groups and schedule configs: list, show, create, replace, patch, delete.

Each write is one call into ``Admin``, which checks the value with the
daemon's own parser, writes it and publishes its config_change.
"""
import orjson
from flask_openapi3 import APIBlueprint, Tag

from . import schemas, status
from .app import ApiError, ctx, json_response

# Every API route may answer these; declared once so the document lists them everywhere.
ERRORS = {400: schemas.Error, 401: schemas.Error, 403: schemas.Error, 404: schemas.Error, 409: schemas.Error,
          413: schemas.Error, 503: schemas.Error}


def operation_id(name, path, method):
    """The view's own name (unique in the app): stable for generated clients."""
    return name


def notified(replies):
    if isinstance(replies, tuple):
        replies = [replies]
    return [{"channel": ch, "receivers": n} for ch, n in replies]


def _doc(body):
    return body.model_dump(exclude_none=True, exclude={"name"})


def blueprint():
    bp = APIBlueprint("config", __name__, abp_security=[{"bearer": []}], abp_responses=ERRORS,
                      operation_id_callback=operation_id)
    _tasks(bp)
    for kind, path, tag, doc_model, create_model, patch_model in (
            ("line", "lines", "lines", schemas.LineDoc, schemas.LineCreate, schemas.EntryPatch),
            ("group", "groups", "line groups", schemas.GroupDoc, schemas.GroupCreate, schemas.GroupPatch),
            ("schedule-config", "schedule-configs", "schedule configs", schemas.ScheduleConfigDoc,
             schemas.ScheduleConfigCreate, schemas.EntryPatch)):
        _entries(bp, kind, path, Tag(name=tag), doc_model, create_model, patch_model)
    return bp


def _tasks(bp):
    tag = [Tag(name="tasks", description="Queue dialer tasks (campaigns): cti_queue_dialer_task@template / @HOST.")]

    @bp.get("/tasks", tags=tag, responses={200: schemas.TaskStatusList})
    def list_tasks(query: schemas.HostQuery):
        """Every task with its status (all hosts, or one with ?host=)."""
        return json_response({"items": status.task_statuses(ctx().r, ctx().config, host=query.host)})

    @bp.post("/tasks", tags=tag, responses={201: schemas.Written})
    def create_task(query: schemas.HostQuery, body: schemas.TaskCreate):
        """Create a task in the template (or for one host); 409 when that scope already has it."""
        c = ctx()
        if c.r.hexists(c.keys.tasks_for(query.host), body.name):
            raise ApiError(409, "conflict", "task %r already exists in %s; PUT or PATCH it"
                           % (body.name, c.keys.tasks_for(query.host)), [{"field": "name", "reason": "exists"}])
        reply = c.admin.task_set(body.name, _doc(body), query.host)
        return json_response({"name": body.name, "scope": query.host or "template", "created": True,
                              "notified": notified(reply)}, 201)

    @bp.get("/tasks/<name>", tags=tag, responses={200: schemas.TaskDetail})
    def show_task(path: schemas.NamePath, query: schemas.HostQuery):
        """The raw @template and @HOST entries and the task as that host runs it (merged)."""
        c = ctx()
        info = c.admin.task_show(path.name, query.host)
        stopped = c.r.hget(c.keys.stopped_tasks, path.name)
        info.update(name=path.name, stopped_at=float(stopped) if stopped else None)
        return json_response(info)

    @bp.put("/tasks/<name>", tags=tag, responses={200: schemas.Written, 201: schemas.Written})
    def replace_task(path: schemas.NamePath, query: schemas.HostQuery, body: schemas.TaskDoc):
        """Create or replace one scope's entry of a task (checked merged with the other scope)."""
        c = ctx()
        existed = c.r.hexists(c.keys.tasks_for(query.host), path.name)
        reply = c.admin.task_set(path.name, _doc(body), query.host)
        return json_response({"name": path.name, "scope": query.host or "template", "created": not existed,
                              "notified": notified(reply)}, 200 if existed else 201)

    @bp.patch("/tasks/<name>", tags=tag, responses={200: schemas.Written})
    def patch_task(path: schemas.NamePath, query: schemas.HostQuery, body: schemas.EntryPatch):
        """Merge-patch one scope's entry (RFC 7386: null removes a key). A host entry is created when missing."""
        patch = body.model_dump(exclude_unset=True)
        reply = ctx().admin.task_patch(path.name, patch, query.host)
        return json_response({"name": path.name, "scope": query.host or "template", "notified": notified(reply)})

    @bp.delete("/tasks/<name>", tags=tag, responses={200: schemas.Deleted})
    def delete_task(path: schemas.NamePath, query: schemas.HostQuery):
        """Delete one scope's entry of a task; calls already up finish."""
        reply = ctx().admin.task_delete(path.name, query.host)
        return json_response({"name": path.name, "deleted": True, "notified": notified(reply)})


def _entries(bp, kind, path_name, tag, doc_model, create_model, patch_model):
    tags = [tag]
    base = "/" + path_name
    suffix = path_name.replace("-", "_")

    # Lines are listed with their use; one path belongs to one blueprint only (flask-openapi3 keeps the
    # last path item registered for a path), so the listing lives here too.
    if kind == "line":
        @bp.get(base, tags=tags, responses={200: schemas.LineList})
        def list_lines():
            """Every line: enabled, capacity, calls on it now (all hosts), whether the daemon refuses its JSON."""
            return json_response({"items": status.lines(ctx().r, ctx().config)})
    else:
        def list_entries():
            c = ctx()
            items = []
            for name, doc in c.admin.entry_list(kind).items():
                item = {"name": name, "config": doc, "error": None}
                try:
                    c.admin.TABLES[kind][1](name, orjson.dumps(doc))
                except Exception as exc:  # noqa: BLE001 - the model's reason, shown as is
                    item["error"] = str(exc)
                items.append(item)
            return json_response({"items": items})
        list_entries.__name__ = "list_" + suffix
        list_entries.__doc__ = "Every %s with its JSON and, when the daemon refuses it, why." % tag.name[:-1]
        bp.get(base, tags=tags, responses={200: schemas.Items})(list_entries)

    def create(body: create_model):
        c = ctx()
        _, _, key = c.admin._table(kind)
        if c.r.hexists(key, body.name):
            raise ApiError(409, "conflict", "%s %r already exists; PUT or PATCH it" % (kind, body.name),
                           [{"field": "name", "reason": "exists"}])
        reply = c.admin.entry_set(kind, body.name, _doc(body))
        return json_response({"name": body.name, "scope": c.config.dialer_domain, "created": True,
                              "notified": notified(reply)}, 201)

    def show(path: schemas.NamePath):
        return json_response({"name": path.name, "config": ctx().admin.entry_show(kind, path.name)})

    def replace(path: schemas.NamePath, body: doc_model):
        c = ctx()
        _, _, key = c.admin._table(kind)
        existed = c.r.hexists(key, path.name)
        reply = c.admin.entry_set(kind, path.name, _doc(body))
        return json_response({"name": path.name, "scope": c.config.dialer_domain, "created": not existed,
                              "notified": notified(reply)}, 200 if existed else 201)

    def patch(path: schemas.NamePath, body: patch_model):
        reply = ctx().admin.entry_patch(kind, path.name, body.model_dump(exclude_unset=True))
        return json_response({"name": path.name, "scope": ctx().config.dialer_domain, "notified": notified(reply)})

    def delete(path: schemas.NamePath):
        reply = ctx().admin.entry_delete(kind, path.name)
        return json_response({"name": path.name, "deleted": True, "notified": notified(reply)})

    noun = tag.name[:-1]
    for fn, verb, doc in ((create, "create", "Create a %s; 409 when it exists."),
                          (show, "show", "One %s's JSON."),
                          (replace, "replace", "Create or replace a %s (checked with the daemon's parser)."),
                          (patch, "patch", "Merge-patch a %s (RFC 7386: null removes a key)."),
                          (delete, "delete", "Delete a %s.")):
        fn.__name__ = "%s_%s" % (verb, suffix)
        fn.__doc__ = doc % noun
    bp.post(base, tags=tags, responses={201: schemas.Written})(create)
    bp.get(base + "/<name>", tags=tags, responses={200: schemas.EntryShow})(show)
    bp.put(base + "/<name>", tags=tags, responses={200: schemas.Written, 201: schemas.Written})(replace)
    bp.patch(base + "/<name>", tags=tags, responses={200: schemas.Written})(patch)
    bp.delete(base + "/<name>", tags=tags, responses={200: schemas.Deleted})(delete)
