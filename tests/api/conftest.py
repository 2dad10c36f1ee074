"""The API in-process (Flask's test client) and as real ``cti-dialer api`` processes, on a real redis-server."""
import os
import re
import signal
import subprocess
import sys

import pytest
import redis as redislib

from cti_dialer import settings
from cti_dialer.api.app import create_app
from tests.conftest import wait_for
# The daemon and simulator fixtures, for the tests that need calls really dialed.
from tests.e2e.conftest import DOMAIN, HOST, daemon, daemon_factory, sim  # noqa: F401

TOKEN = "test-token-0123456789abcdef"
RO_TOKEN = "read-only-token-0123456789"
AUTH = {"Authorization": "Bearer " + TOKEN}
RO_AUTH = {"Authorization": "Bearer " + RO_TOKEN}


def config_text(redis_url, listen="127.0.0.1:0", extra=""):
    return ("[dialer]\nhost = %s\ndomain = %s\ntimezone = UTC\n[redis]\nurl = %s\n"
            "[api]\nlisten = %s\ntokens = %s, ro:%s\nkeepalive = 0.5\n%s"
            % (HOST, DOMAIN, redis_url, listen, TOKEN, RO_TOKEN, extra))


@pytest.fixture
def api_config(redis_server):
    return settings.load(text=config_text(redis_server.url))


class Client:
    """Flask's test client with the token sent on every request (auth=None: none)."""

    def __init__(self, app):
        self.c = app.test_client()

    def _call(self, method, url, auth=AUTH, headers=None, **kw):
        h = dict(auth or {})
        h.update(headers or {})
        return getattr(self.c, method)(url, headers=h, **kw)

    def get(self, url, **kw):
        return self._call("get", url, **kw)

    def post(self, url, **kw):
        return self._call("post", url, **kw)

    def put(self, url, **kw):
        return self._call("put", url, **kw)

    def patch(self, url, **kw):
        return self._call("patch", url, **kw)

    def delete(self, url, **kw):
        return self._call("delete", url, **kw)


@pytest.fixture
def app(api_config, r, redis_server):
    client = redislib.Redis.from_url(redis_server.url)
    yield create_app(api_config, client)
    client.close()


@pytest.fixture
def api(app):
    return Client(app)


def assert_error(resp, status, error=None, field=None):
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:2000])
    doc = resp.get_json()
    assert set(doc) == {"error", "message", "details"}, doc
    if error:
        assert doc["error"] == error, doc
    if field:
        assert any(d["field"] == field or d["field"].startswith(field) for d in doc["details"]), doc
    return doc


class ApiProc:
    """One ``cti-dialer api`` process on a free port."""

    def __init__(self, tmp_path, redis_url, name="api", env=None):
        self.env = env or {}
        self.cfg = tmp_path / ("%s.ini" % name)
        self.cfg.write_text(config_text(redis_url))
        self.logfile = tmp_path / ("%s.log" % name)
        self.proc = None
        self.port = None

    def start(self):
        self._log = open(self.logfile, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self.proc = subprocess.Popen([sys.executable, "-m", "cti_dialer.cli", "api", "-c", str(self.cfg)],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError("api exited (%s):\n%s" % (self.proc.returncode, self.log()))
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", self.log())
            return m and int(m.group(1))
        self.port = wait_for(listening, 20, message="api listening")
        return self

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def log(self):
        return self.logfile.read_text(errors="replace")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("api did not stop on SIGTERM:\n" + self.log())
        return self.proc.returncode if self.proc else None


@pytest.fixture
def api_factory(tmp_path, redis_server, r):
    started = []

    def make(name="api", env=None):
        p = ApiProc(tmp_path, redis_server.url, name, env).start()
        started.append(p)
        return p

    yield make
    for p in started:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()
