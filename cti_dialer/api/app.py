"""The WSGI application: auth, size limits, errors, the OpenAPI document and the static pages.

Flask through flask-openapi3: routes declare their parameters and bodies as
pydantic models (``schemas``), which both validate each request and make
``/openapi.json``. Plain synchronous views suit gevent: each request is a
greenlet and every Redis or socket wait yields.
"""
import hmac
import logging
import os
import re

import orjson
from flask import Response, g, request, send_from_directory
from flask_openapi3 import Info, OpenAPI
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

from .. import __version__, model
from ..admin import Admin, AdminError
from . import schemas

log = logging.getLogger("cti_dialer.api")

HERE = os.path.dirname(os.path.abspath(__file__))
STATIC_DIR = os.path.join(HERE, "static")
PREFIX = "/api/v1"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Served without a token: they hold no data (the console asks for the token itself).
PUBLIC_PATHS = ("/healthz", "/openapi.json", "/docs", "/docs/", "/")
PUBLIC_PREFIXES = ("/console/", "/docs/assets/")


class ApiError(Exception):
    def __init__(self, status, error, message, details=None, headers=None):
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.details = details or []
        self.headers = headers or {}


def error_response(status, error, message, details=(), headers=None):
    body = orjson.dumps({"error": error, "message": message, "details": list(details)})
    resp = Response(body, status=status, mimetype="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def json_response(doc, status=200, headers=None):
    resp = Response(orjson.dumps(doc), status=status, mimetype="application/json")
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


_PARAM_RE = re.compile(r"\b(params\.[A-Za-z_]+|work_hour\[\d+\](?:\.\w+)?|work_time\[\d+\](?:\.\w+)?|"
                       r"holiday\[\d+\](?:\.\w+)?)")
# Words the model's reasons use for a param under another name.
_ALIASES = (("extension", "params.destination_extension"), ("dialplan", "params.destination_dialplan"),
            ("context", "params.destination_context"))
_KNOWN_PARAMS = sorted(model.TASK_PARAMS | model.LINE_PARAMS | model.SCHEDULE_PARAMS, key=len, reverse=True)


def field_of(message, default="body"):
    """Which field an admin-layer reason is about, from its text (the model names fields in its reasons)."""
    if message.startswith("line group"):
        # A group's fields sit at the top of its JSON, not under params.
        # ("line" names a line in most reasons, not the field.)
        found = [(m.start(), name) for name in model.GROUP_FIELDS - {"line", "lines"}
                 for m in [re.search(r"(?<![\w.])%s\b" % re.escape(name), message[len("line group"):])] if m]
        if found:
            return min(found)[1]
    m = re.search(r"unknown params ([A-Za-z0-9_]+)", message)
    if m:
        return "params." + m.group(1)
    m = _PARAM_RE.search(message)
    if m:
        found = m.group(1)
        return found if found.startswith("params.") else "params." + found
    m = re.search(r"variable[s]?\b.*?'([A-Za-z0-9_]+)'", message) or re.search(r"'([A-Za-z0-9_]+)' is not allowed",
                                                                              message)
    if m:
        return "variables." + m.group(1)
    # The reason names its field first ("limit is missing (... mod_cti calls it count)"): take the earliest.
    found = []
    for word, field in _ALIASES + tuple((name, "params." + name) for name in _KNOWN_PARAMS):
        m = re.search(r"(?<![\w.])%s\b" % re.escape(word), message)
        if m:
            found.append((m.start(), -len(word), field))
    return min(found)[2] if found else default


def admin_error(exc: AdminError, field="body"):
    text = str(exc)
    if text.startswith("no ") and " in " in text or text.startswith("no task "):
        return ApiError(404, "not_found", text)
    return ApiError(400, "invalid", text, [{"field": field_of(text, field), "reason": text}])


def _validation_callback(exc: ValidationError):
    details = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = []
        for part in err.get("loc", ()):
            if isinstance(part, int):
                loc.append("[%d]" % part)
            else:
                loc.append(("." if loc else "") + str(part))
        details.append({"field": "".join(loc) or "body", "reason": err.get("msg", "invalid")})
    return error_response(400, "invalid", "the request does not match its schema", details[:100])


class Context:
    """What every view needs: the settings, the Redis client and the admin layer."""

    def __init__(self, config, client):
        self.config = config
        self.r = client
        self.admin = Admin(client, config)
        self.keys = self.admin.keys
        self.tokens = tuple(config.api_tokens)


def ctx() -> Context:
    return g.cti


def create_app(config, client):
    app = OpenAPI(
        __name__,
        info=Info(title="cti-dialer API", version=__version__,
                  description="Tasks, lines, numbers, control, status and results of cti-dialer, on the same "
                              "Redis keys as the daemon and the CLI. Every write is validated by the daemon's "
                              "own parsers and followed by its config_change."),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer",
                                     "description": "A token from [api] tokens in the config file."}},
        responses={400: schemas.Error},
        operation_id_callback=lambda name, path, method: name,
        validation_error_status=400,
        validation_error_model=schemas.Error,
        validation_error_callback=_validation_callback,
        doc_ui=False,
        static_folder=None,
    )
    app.config["MAX_CONTENT_LENGTH"] = config.api_max_body
    app.json.sort_keys = False
    context = Context(config, client)

    @app.before_request
    def _guard():
        g.cti = context
        path = request.path
        if request.content_length is not None and request.content_length > config.api_max_body:
            raise ApiError(413, "too_large", "the body is %d bytes; at most %d are accepted ([api] max_body)"
                           % (request.content_length, config.api_max_body))
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return None
        g.read_only = _authenticate(context.tokens)
        if g.read_only and request.method not in SAFE_METHODS:
            raise ApiError(403, "forbidden", "this token is read-only")
        if request.method in ("POST", "PUT", "PATCH", "DELETE") and request.mimetype == "application/json":
            data = request.get_data(cache=True)
            if data:
                try:
                    orjson.loads(data)
                except orjson.JSONDecodeError as exc:
                    raise ApiError(400, "bad_json", "the body is not valid JSON: %s" % exc,
                                   [{"field": "body", "reason": str(exc)}])
        return None

    @app.errorhandler(ApiError)
    def _api_error(exc):
        return error_response(exc.status, exc.error, exc.message, exc.details, exc.headers)

    @app.errorhandler(AdminError)
    def _admin_error(exc):
        return _api_error(admin_error(exc))

    @app.errorhandler(HTTPException)
    def _http_error(exc):
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(exc.code, "http_%s" % exc.code)
        if exc.code == 413:
            return error_response(413, code, "the body is larger than %d bytes ([api] max_body)"
                                  % config.api_max_body)
        if exc.code and 400 <= exc.code < 500 and exc.response is not None and \
                exc.response.mimetype == "application/json":
            return exc.response        # already ours (a validation error raised through abort())
        return error_response(exc.code or 500, code, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc):
        log.exception("%s %s failed", request.method, request.path)
        if _is_redis_error(exc):
            return error_response(503, "unavailable", "Redis is not reachable: %s" % type(exc).__name__)
        return error_response(500, "internal", "internal error (logged)")

    @app.after_request
    def _headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    _register_pages(app)
    from . import config_routes, control_routes, report_routes, other_routes
    for module in (config_routes, control_routes, report_routes, other_routes):
        app.register_api(module.blueprint(), url_prefix=PREFIX)
    return app


def _is_redis_error(exc):
    import redis
    return isinstance(exc, (redis.ConnectionError, redis.TimeoutError))


def _authenticate(tokens):
    """Whether the request's token is read-only; ApiError 401 when it carries no valid token."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    given = given.strip()
    if scheme.lower() == "bearer" and given:
        found = None
        for token, read_only in tokens:
            # Every token is compared, and in constant time, so timing tells nothing about which matched.
            if hmac.compare_digest(token.encode(), given.encode()) and found is None:
                found = read_only
        if found is not None:
            return found
    raise ApiError(401, "unauthorized", "a valid bearer token is required (Authorization: Bearer <token>)",
                   headers={"WWW-Authenticate": 'Bearer realm="cti-dialer"'})


def _register_pages(app):
    from flask_openapi3 import Tag

    @app.get("/healthz", tags=[Tag(name="system")], responses={200: schemas.Health, 503: schemas.Health})
    def healthz():
        """Liveness: the process answers and whether Redis does (no token needed)."""
        try:
            ok = bool(ctx().r.ping())
        except Exception:   # noqa: BLE001 - any failure means "down" here
            ok = False
        return json_response({"ok": True, "redis": "ok" if ok else "down"}, 200 if ok else 503)

    def openapi_json():
        return Response(orjson.dumps(app.api_doc), mimetype="application/json")

    def docs_page():
        return Response(DOCS_HTML, mimetype="text/html")

    def docs_asset(filename):
        return send_from_directory(swagger_dir(), filename, max_age=3600)

    def console_index():
        return send_from_directory(STATIC_DIR, "index.html", max_age=0)

    def console_file(filename):
        return send_from_directory(STATIC_DIR, filename, max_age=0)

    app.add_url_rule("/openapi.json", "openapi_json", openapi_json)
    app.add_url_rule("/docs", "docs", docs_page)
    app.add_url_rule("/docs/", "docs_slash", docs_page)
    app.add_url_rule("/docs/assets/<path:filename>", "docs_asset", docs_asset)
    app.add_url_rule("/", "console", console_index)
    app.add_url_rule("/console/<path:filename>", "console_file", console_file)


def swagger_dir():
    """Swagger UI's files, shipped in the flask-openapi3-swagger wheel (no CDN: switch hosts are often offline)."""
    import flask_openapi3_swagger
    return os.path.join(os.path.dirname(flask_openapi3_swagger.__file__), "templates", "swagger")


DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cti-dialer API</title>
<link rel="stylesheet" href="/docs/assets/css/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/assets/js/swagger-ui-bundle.js"></script>
<script src="/docs/assets/js/swagger-ui-standalone-preset.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "StandaloneLayout"});
</script>
</body></html>
"""
