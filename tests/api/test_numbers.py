"""Numbers over HTTP: batches (all or nothing, Idempotence-Key), CSV in and out, length, removal, cancel, stop."""
import json

import pytest

from tests.api.conftest import assert_error

pytestmark = pytest.mark.integration

TASK = {"params": {"line_group": ["g1"], "limit": 5, "number_queue": "queue:t1", "destination_extension": "8888"}}


@pytest.fixture
def task(api):
    assert api.put("/api/v1/tasks/t1", json=TASK).status_code == 201


def dial_order(r, queue="queue:t1"):
    """The queue as the daemon takes it: the right end first."""
    return [v.decode() for v in reversed(r.lrange(queue, 0, -1))]


def test_batch_is_queued_in_order_as_the_daemon_reads_entries(api, r, task):
    body = ["13800138000", 4001, {"number": "1002", "id": "crm-7", "variables": {"name": "Bob", "n": 3}},
            {"number": "1003"}]
    resp = api.post("/api/v1/tasks/t1/numbers", json=body)
    assert resp.status_code == 201 and resp.get_json() == {"task": "t1", "queue": "queue:t1", "added": 4}
    order = dial_order(r)
    assert order[:2] == ["13800138000", "4001"] and order[3] == "1003"
    assert json.loads(order[2]) == {"params": {"number": "1002", "id": "crm-7"}, "variables": {"name": "Bob", "n": 3}}
    assert api.get("/api/v1/tasks/t1/queue").get_json() == {"queue": "queue:t1", "length": 4}


def test_ten_thousand_in_one_request(api, r, task):
    numbers = ["139%08d" % i for i in range(10000)]
    resp = api.post("/api/v1/tasks/t1/numbers", json=numbers)
    assert resp.status_code == 201 and resp.get_json()["added"] == 10000
    assert dial_order(r) == numbers


@pytest.mark.parametrize("body,field", [
    (["1001", "10 02"], "[1]"),
    (["1001", "1002@evil"], "[1]"),
    (["1001", " 1003"], "[1]"),
    (["1001", ""], "[1]"),
    ([{"number": "1001", "variables": {"execute_on_answer": "x"}}], "[0]"),
    ([{"number": "1001", "variables": {"v": "a'b"}}], "[0]"),
    ([{"number": "1001", "nmber": "2"}], "[0]"),
    ([1.5], "[0]"),
    ({"numbers": ["1"]}, "body"),
])
def test_a_bad_entry_refuses_the_whole_batch(api, r, task, body, field):
    assert_error(api.post("/api/v1/tasks/t1/numbers", json=body), 400, "invalid", field)
    assert r.llen("queue:t1") == 0


def test_batch_limits_and_unknown_task(api, r, task):
    big = ["1"] * 50001
    assert_error(api.post("/api/v1/tasks/t1/numbers", json=big), 413, "too_large")
    assert_error(api.post("/api/v1/tasks/nope/numbers", json=["1"]), 404, "not_found")
    assert r.llen("queue:t1") == 0


def test_idempotence_key_same_body_replays_and_adds_nothing(api, r, task):
    body = ["1001", {"number": "1002", "id": "a"}]
    first = api.post("/api/v1/tasks/t1/numbers", json=body, headers={"Idempotence-Key": "k-1"})
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    # the same request, formatted differently, is the same request
    again = api.post("/api/v1/tasks/t1/numbers", data=json.dumps(body, indent=2), content_type="application/json",
                     headers={"Idempotence-Key": "k-1"})
    assert again.status_code == 201 and again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert r.llen("queue:t1") == 2
    ttl = r.ttl("cti_dialer_idempotence@test:k-1")
    assert 86000 < ttl <= 86400


def test_idempotence_key_with_another_body_or_task_is_409(api, r, task):
    api.put("/api/v1/tasks/t2", json={"params": dict(TASK["params"], number_queue="queue:t2")})
    assert api.post("/api/v1/tasks/t1/numbers", json=["1001"], headers={"Idempotence-Key": "k"}).status_code == 201
    assert_error(api.post("/api/v1/tasks/t1/numbers", json=["1002"], headers={"Idempotence-Key": "k"}), 409,
                 "conflict", "Idempotence-Key")
    assert_error(api.post("/api/v1/tasks/t2/numbers", json=["1001"], headers={"Idempotence-Key": "k"}), 409)
    assert r.llen("queue:t1") == 1 and r.llen("queue:t2") == 0
    # a refused batch does not use up its key
    assert_error(api.post("/api/v1/tasks/t1/numbers", json=["x y"], headers={"Idempotence-Key": "k2"}), 400)
    assert api.post("/api/v1/tasks/t1/numbers", json=["1003"], headers={"Idempotence-Key": "k2"}).status_code == 201


def test_csv_upload_imports_good_rows_and_names_bad_ones(api, r, task):
    text = "number,id,name\n1001,,Ann\n10 02,,Bad\n1003,c3,\n,,\n1004,,Eve\n"
    resp = api.post("/api/v1/tasks/t1/numbers/csv", data=text.encode("utf-8-sig"), content_type="text/csv")
    doc = resp.get_json()
    assert resp.status_code == 200 and doc["imported"] == 3 and doc["queue"] == "queue:t1"
    assert [e["row"] for e in doc["errors"]] == [3, 5] and "space" in doc["errors"][0]["reason"]
    order = dial_order(r)
    assert json.loads(order[0]) == {"params": {"number": "1001"}, "variables": {"name": "Ann"}}
    assert json.loads(order[1])["params"] == {"number": "1003", "id": "c3"}

    export = api.get("/api/v1/tasks/t1/numbers/csv")
    assert export.status_code == 200 and export.mimetype == "text/csv"
    lines = export.get_data(as_text=True).splitlines()
    assert lines[0] == "number,id,name" and lines[1:] == ["1001,,Ann", "1003,c3,", "1004,,Eve"]


def test_csv_upload_bad_file(api, r, task):
    assert_error(api.post("/api/v1/tasks/t1/numbers/csv", data="phone\n1001\n", content_type="text/csv"), 400,
                 "invalid", "body")
    assert_error(api.post("/api/v1/tasks/t1/numbers/csv", data=b"number\n\xff\xfe\n", content_type="text/csv"), 400)
    assert_error(api.post("/api/v1/tasks/t1/numbers/csv", data="number\n1\n", content_type="application/json"), 400)
    assert r.llen("queue:t1") == 0


def test_remove_by_number_and_by_id(api, r, task):
    api.post("/api/v1/tasks/t1/numbers", json=["1001", "1002", "1001", {"number": "1003", "id": "x"}])
    resp = api.post("/api/v1/tasks/t1/numbers/remove", json={"numbers": ["1001"], "ids": ["x"]})
    assert resp.get_json() == {"queue": "queue:t1", "removed": 3}
    assert dial_order(r) == ["1002"]
    assert_error(api.post("/api/v1/tasks/t1/numbers/remove", json={}), 400)
    assert_error(api.post("/api/v1/tasks/t1/numbers/remove", json={"numbers": "1002"}), 400, "invalid", "numbers")


def test_cancel_a_pending_call_or_redial_by_id(api, r, task):
    api.post("/api/v1/tasks/t1/numbers", json=[{"number": "1001", "id": "a"}, "1002"])
    r.zadd("cti_dialer_retry@test:t1", {json.dumps({"raw": '{"params":{"number":"1003","id":"b"}}', "attempt": 2,
                                                    "done": {}, "id": "r-1"}): 9e9,
                                        json.dumps({"raw": "1004", "attempt": 2, "done": {}, "id": "r-2"}): 9e9})
    assert api.post("/api/v1/tasks/t1/cancel", json={"id": "a"}).get_json() == {"id": "a", "queued": 1, "redials": 0}
    assert api.post("/api/v1/tasks/t1/cancel", json={"id": "b"}).get_json()["redials"] == 1
    assert api.post("/api/v1/tasks/t1/cancel", json={"id": "r-2"}).get_json()["redials"] == 1
    assert_error(api.post("/api/v1/tasks/t1/cancel", json={"id": "a"}), 404, "not_found")
    assert_error(api.post("/api/v1/tasks/t1/cancel", json={}), 400, "invalid", "id")
    assert dial_order(r) == ["1002"] and r.zcard("cti_dialer_retry@test:t1") == 0


def test_pause_resume_switch_template_and_host_entries(api, r, task):
    r.hset("cti_queue_dialer_task@fs1", "t1", json.dumps({"params": {"enable": True}}))
    assert api.post("/api/v1/tasks/t1/pause").get_json()["enable"] is False
    assert json.loads(r.hget("cti_queue_dialer_task@template", "t1"))["params"]["enable"] is False
    assert json.loads(r.hget("cti_queue_dialer_task@fs1", "t1"))["params"]["enable"] is False
    assert api.get("/api/v1/tasks/t1/status").get_json()["state"] == "paused"
    assert api.post("/api/v1/tasks/t1/resume?host=fs1").status_code == 200
    assert json.loads(r.hget("cti_queue_dialer_task@fs1", "t1"))["params"]["enable"] is True
    assert json.loads(r.hget("cti_queue_dialer_task@template", "t1"))["params"]["enable"] is False
    assert api.post("/api/v1/tasks/t1/resume").status_code == 200
    assert json.loads(r.hget("cti_queue_dialer_task@template", "t1"))["params"]["enable"] is True
    assert_error(api.post("/api/v1/tasks/nope/pause"), 404, "not_found")


def test_stop_moves_queue_and_redials_aside(api, r, task):
    api.post("/api/v1/tasks/t1/numbers", json=["1001", "1002", "1003"])
    r.zadd("cti_dialer_retry@test:t1", {json.dumps({"raw": "1004", "attempt": 2, "done": {}, "id": "r"}): 5})
    doc = api.post("/api/v1/tasks/t1/stop").get_json()
    assert doc == {"name": "t1", "enable": False, "moved": 4, "moved_numbers": 3, "moved_redials": 1}
    assert r.llen("queue:t1") == 0 and r.zcard("cti_dialer_retry@test:t1") == 0
    assert dial_order(r, "cti_dialer_stopped@test:t1") == ["1001", "1002", "1003"]
    status = api.get("/api/v1/tasks/t1/status").get_json()
    assert status["state"] == "stopped" and status["completed"] is True and status["stopped_aside"] == 4
    # a second stop appends what was queued since, still in dialing order
    api.post("/api/v1/tasks/t1/numbers", json=["1005"])
    assert api.post("/api/v1/tasks/t1/stop").get_json()["moved"] == 1
    assert dial_order(r, "cti_dialer_stopped@test:t1") == ["1001", "1002", "1003", "1005"]
    api.post("/api/v1/tasks/t1/resume")
    assert r.llen("queue:t1") == 0
    assert api.get("/api/v1/tasks/t1/status").get_json()["state"] != "stopped"
