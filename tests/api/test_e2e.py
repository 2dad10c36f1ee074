"""Real ``cti-dialer api`` processes with the real daemon and the FreeSWITCH simulator."""
import json
import socket
import threading
import urllib.error
import urllib.request

import pytest

from cti_dialer.fsim import Outcome
from tests.api.conftest import TOKEN
from tests.conftest import wait_for
from tests.e2e.conftest import wait_settled

pytestmark = pytest.mark.e2e


def call(base, method, path, body=None, headers=None, token=TOKEN):
    h = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    h.update(headers or {})
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def setup_task(base, name="t1", limit=10, queue=None):
    assert call(base, "PUT", "/api/v1/lines/l1", {"params": {"gateway": "sofia/gateway/gw1/", "limit": 10}})[0] in (
        200, 201)
    assert call(base, "PUT", "/api/v1/groups/g1", {"lines": ["l1"]})[0] in (200, 201)
    status, _, doc = call(base, "POST", "/api/v1/tasks", {
        "name": name, "params": {"line_group": ["g1"], "limit": limit, "number_queue": queue or "queue:" + name,
                                 "destination_extension": "8888"}})
    assert status == 201, doc


class Feed:
    """Reads the live result feed over a real socket, as a dashboard would."""

    def __init__(self, base, task=None):
        host, port = base.rsplit("/", 1)[1].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.sock.sendall(("GET /api/v1/results/stream%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                           % ("?task=" + task if task else "", TOKEN)).encode())
        self.events, self.keepalives, self.raw = [], 0, b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                self.raw += chunk
                self.keepalives = self.raw.count(b": keepalive")
                self.events = [json.loads(line[6:]) for line in self.raw.decode(errors="replace").splitlines()
                               if line.startswith("data: ")]
        except OSError:
            return

    def close(self):
        self.sock.close()


def test_numbers_added_over_http_are_dialed_and_reported(daemon, sim, api_factory, r):
    base = api_factory().url
    setup_task(base)
    feed = Feed(base, task="t1")
    wait_for(lambda: b"connected" in feed.raw, 10, message="feed connected")
    numbers = ["1380013%04d" % i for i in range(40)]
    status, _, doc = call(base, "POST", "/api/v1/tasks/t1/numbers", numbers, {"Idempotence-Key": "batch-1"})
    assert status == 201 and doc["added"] == 40
    wait_settled(r)
    assert sorted(o.number for o in sim.originates()) == numbers

    def finished():
        s = call(base, "GET", "/api/v1/tasks/t1/status")[2]
        return s if s["processed"] == 40 else None
    s = wait_for(finished, 15, message="40 processed")
    assert s["answered"] == 40 and s["answer_rate"] == 1.0 and s["queued"] == 0 and s["total"] == 40
    wait_for(lambda: len(feed.events) == 40, 15, message="40 results on the live feed")
    assert sorted(e["number"] for e in feed.events) == numbers
    feed.close()

    page = call(base, "GET", "/api/v1/results?task=t1&limit=100")[2]
    assert len(page["items"]) == 40 and page["next"] is None
    # the status record is refreshed every 2 s; the first may predate the ESL login
    hosts = wait_for(lambda: [h for h in call(base, "GET", "/api/v1/hosts")[2]["items"] if h["esl"] == "connected"],
                     10, message="fs1 reports ESL connected")
    assert hosts[0]["host"] == "fs1" and hosts[0]["alive"] is True and hosts[0]["state"] == "running"
    # the same batch again, the same key: nothing more is dialed
    status, headers, again = call(base, "POST", "/api/v1/tasks/t1/numbers", numbers, {"Idempotence-Key": "batch-1"})
    assert status == 201 and again == doc and headers["Idempotent-Replayed"] == "true"
    assert r.llen("queue:t1") == 0


def test_stop_really_stops(daemon, sim, api_factory, r):
    sim.default_outcome = Outcome.answer(ring_ms=0, hold_ms=300)
    base = api_factory().url
    setup_task(base, limit=2)
    setup_task(base, name="t2")
    numbers = ["1390000%04d" % i for i in range(200)]
    assert call(base, "POST", "/api/v1/tasks/t1/numbers", numbers)[0] == 201
    wait_for(lambda: len(sim.originates()) >= 2, 15, message="t1 dialing")
    status, _, doc = call(base, "POST", "/api/v1/tasks/t1/stop")
    assert status == 200 and doc["enable"] is False and doc["moved"] == doc["moved_numbers"] > 150
    assert r.llen("queue:t1") == 0
    # What was claimed before the stop finishes; then t1 has nothing left anywhere.
    wait_settled(r)
    dialed = {o.number for o in sim.originates()}
    assert len(dialed) == 200 - doc["moved"]
    # The daemon keeps serving other tasks: t2's number is dialed, t1's moved ones are not.
    sim.default_outcome = Outcome.answer(ring_ms=0, hold_ms=0)
    assert call(base, "POST", "/api/v1/tasks/t2/numbers", ["1555"])[0] == 201
    wait_for(lambda: any(o.number == "1555" for o in sim.originates()), 15, message="t2 dialed")
    assert {o.number for o in sim.originates()} - {"1555"} == dialed
    s = call(base, "GET", "/api/v1/tasks/t1/status")[2]
    assert s["state"] == "stopped" and s["completed"] is True and s["stopped_aside"] == doc["moved"]
    # resume: new numbers are dialed, the ones moved aside are not
    assert call(base, "POST", "/api/v1/tasks/t1/resume")[2]["enable"] is True
    assert call(base, "POST", "/api/v1/tasks/t1/numbers", ["1666"])[0] == 201
    wait_for(lambda: any(o.number == "1666" for o in sim.originates()), 15, message="t1 dialed after resume")
    wait_settled(r)
    assert {o.number for o in sim.originates()} - {"1555", "1666"} == dialed


def test_pause_stops_new_calls_until_resume(daemon, sim, api_factory, r):
    base = api_factory().url
    setup_task(base)
    assert call(base, "POST", "/api/v1/tasks/t1/pause")[2]["enable"] is False
    wait_for(lambda: call(base, "GET", "/api/v1/tasks/t1/status")[2]["hosts"].get("fs1") == "paused", 15,
             message="fs1 reports t1 paused")
    assert call(base, "POST", "/api/v1/tasks/t1/numbers", ["1001", "1002"])[0] == 201
    assert call(base, "GET", "/api/v1/tasks/t1/status")[2]["state"] == "paused"
    assert call(base, "POST", "/api/v1/tasks/t1/resume")[0] == 200
    wait_settled(r)
    assert sorted(o.number for o in sim.originates()) == ["1001", "1002"]


def test_direct_test_call(daemon, sim, api_factory, r):
    base = api_factory().url
    setup_task(base)
    status, _, doc = call(base, "POST", "/api/v1/calls", {"number": "1001", "task": "t1", "timeout": 30})
    assert status == 200, doc
    assert doc["answered"] is True and doc["result"]["number"] == "1001" and doc["result"]["task"] == "t1"
    status, _, doc = call(base, "POST", "/api/v1/calls", {"number": "1002", "line": "l1", "timeout": 30})
    assert status == 200 and doc["answered"] is True, doc
    assert [o.number for o in sim.originates()] == ["1001", "1002"]


def test_idempotence_holds_across_two_api_processes(api_factory, r):
    a, b = api_factory("a"), api_factory("b")
    setup_task(a.url)
    body = ["1%09d" % i for i in range(1000)]
    replies = []

    def send(base):
        replies.append(call(base, "POST", "/api/v1/tasks/t1/numbers", body, {"Idempotence-Key": "crm-42"}))
    threads = [threading.Thread(target=send, args=(p.url,)) for p in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [s for s, _, _ in replies] == [201] * 4
    assert all(doc == replies[0][2] for _, _, doc in replies)
    assert sum(1 for _, h, _ in replies if h.get("Idempotent-Replayed") == "true") == 3
    assert r.llen("queue:t1") == 1000
    status, _, doc = call(b.url, "POST", "/api/v1/tasks/t1/numbers", body[:10], {"Idempotence-Key": "crm-42"})
    assert status == 409 and doc["error"] == "conflict"
    assert r.llen("queue:t1") == 1000


def test_sigterm_stops_with_a_live_feed_open(api_factory):
    p = api_factory()
    feed = Feed(p.url)
    wait_for(lambda: feed.keepalives >= 1, 10, message="a keepalive on the feed")
    assert p.stop() == 0
    feed.close()


def test_tells_systemd_when_ready_and_keeps_the_watchdog_fed(api_factory, tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    try:
        p = api_factory(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        ready = sock.recv(4096).decode()
        assert ready.startswith("READY=1") and "STATUS=serving on http://127.0.0.1:%d" % p.port in ready
        assert sock.recv(4096) == b"WATCHDOG=1"
        assert p.stop() == 0
        messages = []
        while b"STOPPING=1" not in messages:
            messages.append(sock.recv(4096))
    finally:
        sock.close()


def test_concurrent_requests_keep_their_own_token(api_factory):
    from tests.api.conftest import RO_TOKEN
    from concurrent.futures import ThreadPoolExecutor
    base = api_factory().url
    tokens = [TOKEN, RO_TOKEN] * 40

    def whoami(token):
        return call(base, "GET", "/api/v1/whoami", token=token)[2]["read_only"]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(whoami, tokens))
    assert answers == [t == RO_TOKEN for t in tokens]
