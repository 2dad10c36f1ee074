"""The OpenAPI document is generated from the routes, valid OpenAPI 3.1, and lists every route."""
import re

import pytest
import redis as redislib
from openapi_spec_validator import validate

from cti_dialer import settings
from cti_dialer.api.app import create_app
from tests.api.conftest import config_text

pytestmark = pytest.mark.unit

# Pages, not API operations: the console, the interactive docs and the document itself.
NOT_OPERATIONS = {"/", "/console/<path:filename>", "/docs", "/docs/", "/docs/assets/<path:filename>",
                  "/openapi.json"}


@pytest.fixture(scope="module")
def app():
    # No request reaches Redis here: the client never connects.
    return create_app(settings.load(text=config_text("redis://127.0.0.1:1/0")), redislib.Redis(port=1))


@pytest.fixture(scope="module")
def doc(app):
    return app.test_client().get("/openapi.json").get_json()


def test_document_is_valid_openapi_3_1(doc):
    assert doc["openapi"].startswith("3.1")
    validate(doc)


def test_every_route_is_in_the_document(app, doc):
    seen = 0
    for rule in app.url_map.iter_rules():
        if rule.rule in NOT_OPERATIONS or rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        assert path in doc["paths"], path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in doc["paths"][path], (method, path)
            seen += 1
    assert seen >= 45
    # and nothing in the document that the server does not route
    routed = {re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", r.rule) for r in app.url_map.iter_rules()}
    assert set(doc["paths"]) <= routed


def test_operations_are_named_once_and_secured(doc):
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if path == "/healthz":
                assert "security" not in op
            else:
                assert op["security"] == [{"bearer": []}], (method, path)
                assert op["responses"]["401"]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"}
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_contract_shapes_are_declared(doc):
    status = doc["components"]["schemas"]["TaskStatus"]["properties"]
    for field in ("name", "state", "enable", "calls_up", "limit", "queued", "pending_redials", "dialed", "answered",
                  "failed", "failed_by_cause", "total", "processed", "answer_rate", "completed"):
        assert field in status, field
    add = doc["paths"]["/api/v1/tasks/{name}/numbers"]["post"]
    assert any(p["name"] == "Idempotence-Key" and p["in"] == "header" for p in add["parameters"])
    assert "text/event-stream" in doc["paths"]["/api/v1/results/stream"]["get"]["responses"]["200"]["content"]


def test_docs_page_and_its_assets_ship_with_the_package(app):
    c = app.test_client()
    page = c.get("/docs")
    assert page.status_code == 200 and b"/openapi.json" in page.data
    for src in re.findall(rb'(?:src|href)="(/docs/assets/[^"]+)"', page.data):
        asset = c.get(src.decode())
        assert asset.status_code == 200 and len(asset.data) > 1000, src
    assert b"http" not in b"".join(re.findall(rb'(?:src|href)="([^"]+)"', page.data))   # no CDN
