"""Tokens, read-only tokens, size limits, and errors that name the field without echoing secrets."""
import re

import pytest

from cti_dialer import settings
from cti_dialer.api.app import create_app
from tests.api.conftest import RO_AUTH, RO_TOKEN, TOKEN, Client, assert_error, config_text

pytestmark = pytest.mark.integration


def api_rules(app):
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        url = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", "x", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((method, url))
    return out


def test_every_api_route_needs_a_valid_token(api, app, r):
    rules = api_rules(app)
    assert len(rules) >= 45
    for auth in (None, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": "Basic " + TOKEN},
                 {"Authorization": TOKEN}, {"Authorization": "Bearer " + TOKEN[:-1]}):
        for method, url in rules:
            resp = api._call(method.lower(), url, auth=auth, json={})
            assert_error(resp, 401, "unauthorized")
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.dbsize() == 0


def test_public_paths_need_no_token(api):
    assert api.get("/healthz", auth=None).get_json() == {"ok": True, "redis": "ok"}
    for path in ("/openapi.json", "/docs", "/"):
        assert api.get(path, auth=None).status_code == 200, path


def test_read_only_token_reads_and_cannot_write(api, app, r):
    assert api.get("/api/v1/whoami", auth=RO_AUTH).get_json() == {"read_only": True}
    assert api.get("/api/v1/whoami").get_json() == {"read_only": False}
    assert api.get("/api/v1/tasks", auth=RO_AUTH).status_code == 200
    writes = [(m, u) for m, u in api_rules(app) if m != "GET"]
    assert len(writes) >= 20
    for method, url in writes:
        assert_error(api._call(method.lower(), url, auth=RO_AUTH, json={"numbers": ["1"]}), 403, "forbidden")
    assert r.dbsize() == 0


def test_body_over_the_limit_is_refused_before_anything_is_written(redis_server, r):
    import redis as redislib
    config = settings.load(text=config_text(redis_server.url, extra="max_body = 1000\n"))
    api = Client(create_app(config, redislib.Redis.from_url(redis_server.url)))
    assert_error(api.post("/api/v1/tasks/t1/numbers", json=["1000%04d" % i for i in range(200)]), 413, "too_large")
    assert_error(api.post("/api/v1/dnc", json={"numbers": ["1000%04d" % i for i in range(200)]}), 413)
    assert r.dbsize() == 0


def test_bad_json_and_wrong_shapes_are_400_with_details(api, r):
    doc = assert_error(api.post("/api/v1/dnc", data="{", content_type="application/json"), 400, "bad_json", "body")
    assert doc["details"][0]["reason"]
    assert_error(api.post("/api/v1/dnc", json={"numbers": ["1"], "extra": 1}), 400, "invalid", "extra")
    assert_error(api.post("/api/v1/dnc", json=["1"]), 400, "invalid")
    assert_error(api.get("/api/v1/results?limit=5000"), 400, "invalid", "limit")
    assert_error(api.get("/api/v1/results?colour=red"), 400, "invalid", "colour")
    assert r.dbsize() == 0


def test_unknown_route_and_method_get_json_errors(api):
    assert_error(api.get("/api/v1/nothing"), 404, "not_found")
    assert_error(api.put("/api/v1/whoami"), 405, "method_not_allowed")


def test_tokens_are_never_echoed(api):
    for resp in (api.get("/api/v1/whoami"), api.get("/api/v1/tasks", auth={"Authorization": "Bearer " + TOKEN + "x"}),
                 api.post("/api/v1/tasks/t/pause", auth=RO_AUTH), api.get("/openapi.json", auth=None)):
        body = resp.get_data()
        assert TOKEN.encode() not in body and RO_TOKEN.encode() not in body
        assert TOKEN not in str(resp.headers)


@pytest.mark.unit
def test_token_setting_marks_read_only_and_hides_bad_tokens():
    assert settings._api_tokens(" %s , ro:%s " % (TOKEN, RO_TOKEN)) == ((TOKEN, False), (RO_TOKEN, True))
    assert settings._api_tokens("") == ()
    with pytest.raises(ValueError) as exc:
        settings._api_tokens("%s, short-secret" % TOKEN)
    assert "short-secret" not in str(exc.value) and "#2" in str(exc.value)
    with pytest.raises(settings.SettingsError) as exc:
        settings.load(text="[api]\ntokens = has space in it 0123456789\n")
    assert "space in it" not in str(exc.value).split("tokens = ")[0]


@pytest.mark.unit
def test_check_config_hides_the_tokens(tmp_path):
    from click.testing import CliRunner
    from cti_dialer.cli import main
    cfg = tmp_path / "c.ini"
    cfg.write_text("[api]\ntokens = %s\n" % TOKEN)
    out = CliRunner().invoke(main, ["check-config", "-c", str(cfg)]).output
    assert "[api] tokens = ***" in out and TOKEN not in out


def test_redis_down_is_503_and_healthz_says_so():
    import redis as redislib
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    # Nothing listens on port 1: every Redis call fails at once (no retries, to keep the test short).
    config = settings.load(text=config_text("redis://127.0.0.1:1/0"))
    api = Client(create_app(config, redislib.Redis(port=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))))
    resp = api.get("/healthz", auth=None)
    assert resp.status_code == 503 and resp.get_json() == {"ok": True, "redis": "down"}
    assert_error(api.get("/api/v1/tasks"), 503, "unavailable")
    assert_error(api.post("/api/v1/dnc", json={"numbers": ["1"]}), 503, "unavailable")
