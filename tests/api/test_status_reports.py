"""Status, hosts, results and their CSV, results per cause, scheduled calls and the do-not-call set."""
import json
import time

import pytest

from tests.api.conftest import assert_error

pytestmark = pytest.mark.integration

TASK = {"params": {"line_group": ["g1"], "limit": 5, "number_queue": "queue:t1", "destination_extension": "8888"}}


def host_record(r, host, active=2, heartbeat=None, alive=True):
    r.hset("cti_dialer_status@" + host, mapping={
        "host": host, "pid": "42", "version": "0.1.0", "started_at": "1.0", "heartbeat": repr(heartbeat or time.time()),
        "state": "running", "esl": "connected", "active_calls": str(active), "pending_writes": "0",
        "tracked_claims": "0", "tracked_uuids": "0", "rss_kb": "30000"})
    r.sadd("cti_dialer_hosts@test", host)
    if alive:
        r.set("cti_dialer_alive@" + host, "1", ex=60)


def task_record(r, host, name, state="running", active=1, limit=5):
    r.hset("cti_dialer_task_status@" + host, name, json.dumps({
        "state": state, "reason": "", "active": active, "limit": limit, "queue": "queue:" + name, "queued": 0,
        "redials_pending": 0, "dialed": 0, "answered": 0, "failed": 0, "rejected": 0, "last_error": "",
        "counters": "", "updated": time.time()}))


def test_task_status_totals_from_the_daemons_records(api, r):
    api.put("/api/v1/tasks/t1", json=TASK)
    api.post("/api/v1/tasks/t1/numbers", json=["1", "2", "3"])
    host_record(r, "fs1")
    host_record(r, "fs2")
    task_record(r, "fs1", "t1", active=2)
    task_record(r, "fs2", "t1", active=1)
    r.hset("cti_dialer_counter@test:t1", mapping={"results": 12, "originates": 11, "answered": 6, "failed": 6,
                                                  "cause:USER_BUSY": 4, "cause:NO_ANSWER": 2, "redials_scheduled": 2})
    r.zadd("cti_dialer_retry@test:t1", {"a": 1, "b": 2})
    s = api.get("/api/v1/tasks/t1/status").get_json()
    assert s == {
        "name": "t1", "state": "running", "enable": True, "calls_up": 3, "limit": 10, "queued": 3,
        "pending_redials": 2, "dialed": 11, "answered": 6, "failed": 6,
        "failed_by_cause": {"USER_BUSY": 4, "NO_ANSWER": 2}, "total": 10 + 3 + 2 + 3, "processed": 10,
        "answer_rate": 0.6, "completed": False, "queue": "queue:t1", "reason": "",
        "hosts": {"fs1": "running", "fs2": "running"}, "stopped_at": None, "stopped_aside": 0}
    assert api.get("/api/v1/tasks/t1/status?host=fs2").get_json()["calls_up"] == 1
    items = api.get("/api/v1/tasks").get_json()["items"]
    assert [i["name"] for i in items] == ["t1"] and items[0]["total"] == 18
    assert_error(api.get("/api/v1/tasks/nope/status"), 404, "not_found")


def test_task_past_stop_time_with_nothing_left_is_completed(api, r):
    api.put("/api/v1/tasks/t1", json={"params": dict(TASK["params"], stop_time="2020-1-1 00:00")})
    host_record(r, "fs1")
    task_record(r, "fs1", "t1", state="finished", active=0)
    s = api.get("/api/v1/tasks/t1/status").get_json()
    assert s["state"] == "completed" and s["completed"] is True
    api.post("/api/v1/tasks/t1/numbers", json=["1"])
    assert api.get("/api/v1/tasks/t1/status").get_json()["completed"] is False


def test_task_that_no_host_can_run_is_error(api, r):
    r.hset("cti_queue_dialer_task@template", "bad", json.dumps({"params": {"limit": 1}}))
    s = api.get("/api/v1/tasks/bad/status").get_json()
    assert s["state"] == "error" and "number_queue" in s["reason"]


def test_hosts(api, r):
    host_record(r, "fs1", active=3)
    host_record(r, "fs2", alive=False)
    r.hset("cti_dialer_inflight@fs1", mapping={"c1": json.dumps({"owner": "x", "line": "l1"}),
                                               "c2": json.dumps({"owner": "x", "line": "l1"}), "c3": "junk"})
    task_record(r, "fs1", "t1")
    items = {h["host"]: h for h in api.get("/api/v1/hosts").get_json()["items"]}
    fs1 = items["fs1"]
    assert fs1["alive"] is True and fs1["state"] == "running" and fs1["esl"] == "connected"
    assert fs1["calls_up"] == 3 and fs1["lines_in_use"] == {"l1": 2} and fs1["redis"] == "ok"
    assert fs1["heartbeat"] > time.time() - 60 and fs1["tasks"]["t1"]["state"] == "running"
    assert items["fs2"]["alive"] is False and items["fs2"]["state"] == "down"
    assert api.get("/api/v1/hosts/fs1").get_json()["host"] == "fs1"
    assert_error(api.get("/api/v1/hosts/nope"), 404)


def add_results(r, n, t0):
    ids = []
    for i in range(n):
        ids.append(r.xadd("cti_dialer_result@test", {
            "ts": repr(t0 + i), "host": "fs1", "kind": "queue", "task": "t1" if i % 2 == 0 else "t2",
            "number": "100%d" % (i % 5), "id": "e%d" % i, "cause": "NORMAL_CLEARING" if i % 3 == 0 else "USER_BUSY",
            "answered": "1" if i % 3 == 0 else "0"}, id="%d-0" % int((t0 + i) * 1000)).decode())
    return ids


def test_results_filters_and_pages(api, r):
    t0 = time.time() - 100
    ids = add_results(r, 30, t0)
    page = api.get("/api/v1/results?limit=5").get_json()
    assert [x["_id"] for x in page["items"]] == ids[::-1][:5] and page["next"] == ids[-5]
    seen, cursor = [], None
    while True:
        doc = api.get("/api/v1/results?task=t1&limit=4" + ("&cursor=" + cursor if cursor else "")).get_json()
        seen += doc["items"]
        cursor = doc["next"]
        if not cursor:
            break
    assert [x["id"] for x in seen] == ["e%d" % i for i in range(28, -1, -2)]
    assert [x["_id"] for x in api.get("/api/v1/results?id=e7").get_json()["items"]] == [ids[7]]
    by_number = api.get("/api/v1/results?number=1003").get_json()["items"]
    assert {x["number"] for x in by_number} == {"1003"} and len(by_number) == 6
    busy = api.get("/api/v1/results?cause=user_busy&limit=1000").get_json()["items"]
    assert len(busy) == 20 and {x["cause"] for x in busy} == {"USER_BUSY"}
    window = api.get("/api/v1/results?since=%r&until=%r" % (t0 + 10, t0 + 20)).get_json()["items"]
    assert [x["id"] for x in window] == ["e%d" % i for i in range(19, 9, -1)]
    assert_error(api.get("/api/v1/results?cursor=abc"), 400, "invalid", "cursor")
    assert_error(api.get("/api/v1/results?since=yesterday"), 400, "invalid", "since")


def test_results_csv(api, r):
    add_results(r, 6, time.time() - 10)
    resp = api.get("/api/v1/results/csv?task=t2")
    assert resp.mimetype == "text/csv"
    lines = resp.get_data(as_text=True).splitlines()
    assert lines[0].startswith("_id,ts,host,kind,task,number,id,cause") and len(lines) == 4
    resp = api.get("/api/v1/results/csv?limit=2")
    assert len(resp.get_data(as_text=True).splitlines()) == 3 and resp.headers["X-Next-Cursor"]


def test_cause_stats_per_minute(api, r):
    now = time.time()
    r.xadd("cti_dialer_result@test", {"ts": repr(now - 7200), "task": "t1", "cause": "OLD"},
           id="%d-0" % int((now - 7200) * 1000))
    add_results(r, 6, now - 5)
    doc = api.get("/api/v1/stats/causes?minutes=60").get_json()
    assert len(doc["buckets"]) in (60, 61)
    totals = {}
    for b in doc["buckets"]:
        for cause, n in b["causes"].items():
            totals[cause] = totals.get(cause, 0) + n
    assert totals == {"NORMAL_CLEARING": 2, "USER_BUSY": 4}
    t1 = api.get("/api/v1/stats/causes?task=t1&minutes=5").get_json()
    assert sum(sum(b["causes"].values()) for b in t1["buckets"]) == 3
    assert_error(api.get("/api/v1/stats/causes?minutes=0"), 400, "invalid", "minutes")


def test_scheduled_calls(api, r):
    api.put("/api/v1/groups/g1", json={"lines": ["l1"]})
    api.put("/api/v1/schedule-configs/c1", json={"params": {"line_group": ["g1"], "destination_extension": "8"}})
    resp = api.post("/api/v1/schedule", json={"number": "1001", "at": "+3600", "config": "c1", "id": "s1",
                                              "variables": {"name": "Ann"}, "expires": "+7200"})
    assert resp.status_code == 201, resp.get_json()
    doc = resp.get_json()
    assert doc["number"] == "1001" and doc["id"] == "s1" and abs(doc["at"] - time.time() - 3600) < 60
    assert doc["expires"] > doc["at"] and doc["variables"] == {"name": "Ann"}
    api.post("/api/v1/schedule", json={"number": 1002, "at": time.time() - 5, "config": "c1"})
    member, score = r.zrange("cti_schedule_dialer_number@test", 0, 0, withscores=True)[0]
    assert json.loads(member)["params"]["number"] == "1002"
    assert [x["number"] for x in api.get("/api/v1/schedule?when=due").get_json()["items"]] == ["1002"]
    assert [x["number"] for x in api.get("/api/v1/schedule?when=future").get_json()["items"]] == ["1001"]
    assert api.get("/api/v1/schedule").get_json()["total"] == 2
    assert api.delete("/api/v1/schedule/s1").get_json() == {"removed": 1}
    assert_error(api.delete("/api/v1/schedule/s1"), 404, "not_found")
    before = r.zcard("cti_schedule_dialer_number@test")
    assert_error(api.post("/api/v1/schedule", json={"number": "1", "at": "soon", "config": "c1"}), 400, "invalid", "at")
    assert_error(api.post("/api/v1/schedule", json={"number": "1", "at": "+1", "config": "c9"}), 400, "invalid",
                 "config")
    assert_error(api.post("/api/v1/schedule", json={"number": "1 2", "at": "+1", "config": "c1"}), 400, "invalid")
    assert_error(api.post("/api/v1/schedule", json={"number": "1", "at": "+1", "config": "c1",
                                                    "variables": {"api_on_answer": "x"}}), 400, "invalid",
                 "variables.api_on_answer")
    assert_error(api.get("/api/v1/schedule?when=later"), 400, "invalid", "when")
    assert r.zcard("cti_schedule_dialer_number@test") == before


def test_dnc(api, r):
    assert api.post("/api/v1/dnc", json={"numbers": ["1001", 1002, "1001"]}).get_json() == {"added": 2}
    assert r.smembers("cti_dnc@test") == {b"1001", b"1002"}
    assert api.get("/api/v1/dnc/1001").get_json() == {"number": "1001", "listed": True}
    assert api.get("/api/v1/dnc/1003").get_json()["listed"] is False
    page = api.get("/api/v1/dnc").get_json()
    assert page == {"items": ["1001", "1002"], "next": None, "total": 2}
    assert api.post("/api/v1/dnc/remove", json={"numbers": ["1001", "1009"]}).get_json()["removed"] == 1
    assert api.delete("/api/v1/dnc/1002").get_json()["removed"] == 1
    assert_error(api.post("/api/v1/dnc", json={"numbers": ["1 1"]}), 400, "invalid", "numbers[0]")
    assert_error(api.post("/api/v1/dnc", json={"numbers": []}), 400, "invalid", "numbers")
    assert r.scard("cti_dnc@test") == 0


def test_dnc_list_pages_through_a_big_set(api, r):
    r.sadd("cti_dnc@test", *["1%06d" % i for i in range(3000)])
    seen, cursor = set(), 0
    while True:
        doc = api.get("/api/v1/dnc?count=500&cursor=%d" % cursor).get_json()
        seen.update(doc["items"])
        if doc["next"] is None:
            break
        cursor = doc["next"]
    assert len(seen) == 3000


def test_test_call_needs_one_target(api, r):
    assert_error(api.post("/api/v1/calls", json={"number": "1001"}), 400, "invalid", "task")
    assert_error(api.post("/api/v1/calls", json={"number": "1001", "task": "t", "line": "l"}), 400)
    assert_error(api.post("/api/v1/calls", json={"number": "1001", "task": "nope"}), 404)
    assert_error(api.post("/api/v1/calls", json={"number": "10 01", "line": "l1"}), 404)
    assert_error(api.post("/api/v1/calls", json={"number": "1001", "timeout": 0, "line": "l1"}), 400, "invalid",
                 "timeout")
    assert r.dbsize() == 0


def test_live_feed_resumes_after_last_event_id(app, r):
    ids = add_results(r, 4, time.time() - 10)
    resp = app.test_client().get("/api/v1/results/stream?task=t1", buffered=False,
                                 headers={"Authorization": "Bearer test-token-0123456789abcdef",
                                          "Last-Event-ID": ids[0]})
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    chunks = iter(resp.response)
    text = ""
    while "data:" not in text:
        text += next(chunks).decode()
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    # after the first result: of the three left only those of t1 (the 3rd), each with its stream id
    assert [e["_id"] for e in events] == [ids[2]] and "id: %s\nevent: result\n" % ids[2] in text
    r.xadd("cti_dialer_result@test", {"task": "t1", "number": "2000", "cause": "NORMAL_CLEARING"})
    text = ""
    while "data:" not in text:
        chunk = next(chunks).decode()
        assert chunk.startswith((": keepalive", "id: "))
        text += chunk
    assert json.loads(text.split("data: ")[1].split("\n")[0])["number"] == "2000"
    resp.close()
