"""Tasks, lines, groups and schedule configs over HTTP: the admin layer's checks, writes and notifications."""
import json

import pytest

from tests.api.conftest import assert_error

pytestmark = pytest.mark.integration

TASK = {"params": {"line_group": ["g1"], "limit": 5, "number_queue": "queue:t1", "destination_extension": "8888"},
        "variables": {"origination_caller_id_number": "4001"}}


@pytest.fixture
def notes(r):
    """config_change messages published while the test runs, on every config channel."""
    p = r.pubsub()
    p.psubscribe("config@*")
    p.get_message(timeout=1)

    def read():
        out = []
        while True:
            m = p.get_message(timeout=0.2)
            if m is None:
                return out
            if m["type"] == "pmessage":
                out.append((m["channel"].decode(), json.loads(m["data"])))
    yield read
    p.close()


def test_task_lifecycle_in_the_template(api, r, notes):
    resp = api.post("/api/v1/tasks", json=dict(TASK, name="t1"))
    assert resp.status_code == 201 and resp.get_json()["created"] is True
    assert json.loads(r.hget("cti_queue_dialer_task@template", "t1")) == TASK
    assert notes() == [("config@all", {"type": "config_change", "table": "cti_queue_dialer_task", "key": "t1"})]
    assert_error(api.post("/api/v1/tasks", json=dict(TASK, name="t1")), 409, "conflict", "name")

    show = api.get("/api/v1/tasks/t1").get_json()
    assert show["template"] == TASK and show["host"] is None
    assert show["effective"]["limit"] == 5 and show["effective"]["number_queue"] == "queue:t1"

    resp = api.patch("/api/v1/tasks/t1", json={"params": {"limit": 9, "destination_extension": "9999"},
                                                "variables": {"origination_caller_id_number": None}})
    assert resp.status_code == 200, resp.get_json()
    stored = json.loads(r.hget("cti_queue_dialer_task@template", "t1"))
    assert stored["params"]["limit"] == 9 and stored["variables"] == {}
    assert len(notes()) == 1

    replaced = {"params": dict(TASK["params"], limit=2)}
    assert api.put("/api/v1/tasks/t1", json=replaced).status_code == 200
    assert json.loads(r.hget("cti_queue_dialer_task@template", "t1")) == replaced
    assert api.put("/api/v1/tasks/t9", json=replaced).status_code == 201

    assert api.delete("/api/v1/tasks/t1").get_json()["deleted"] is True
    assert r.hget("cti_queue_dialer_task@template", "t1") is None
    assert_error(api.delete("/api/v1/tasks/t1"), 404, "not_found")
    assert_error(api.get("/api/v1/tasks/t1"), 404)
    assert len(notes()) == 3         # put t1, put t9, delete t1


def test_task_for_one_host_shows_merged_and_raw_parts(api, r, notes):
    api.post("/api/v1/tasks", json=dict(TASK, name="t1"))
    notes()
    resp = api.patch("/api/v1/tasks/t1?host=fs1", json={"params": {"limit": 1}})
    assert resp.status_code == 200, resp.get_json()
    assert json.loads(r.hget("cti_queue_dialer_task@fs1", "t1")) == {"params": {"limit": 1}}
    assert notes() == [("config@fs1", {"type": "config_change", "table": "cti_queue_dialer_task", "key": "t1"})]
    show = api.get("/api/v1/tasks/t1?host=fs1").get_json()
    assert show["host"] == {"params": {"limit": 1}} and show["template"] == TASK
    assert show["effective"]["limit"] == 1 and show["host_name"] == "fs1"
    assert api.delete("/api/v1/tasks/t1?host=fs1").status_code == 200
    assert r.hget("cti_queue_dialer_task@fs1", "t1") is None and r.hget("cti_queue_dialer_task@template", "t1")


@pytest.mark.parametrize("body,field", [
    (dict(TASK, name="t1", colour="red"), "colour"),                                    # unknown top-level field
    ({"name": "t1", "params": dict(TASK["params"], limt=5)}, "params.limt"),            # unknown param
    ({"name": "t1", "params": dict(TASK["params"], limit="many")}, "params.limit"),
    ({"name": "t1", "params": {"limit": 1}}, "params.number_queue"),                    # required param missing
    ({"name": "t1", "params": TASK["params"], "variables": {"x": "a}b"}}, "variables.x"),  # unsafe value
    ({"name": "t1", "params": TASK["params"], "variables": {"originate_retries": "3"}}, "variables.originate_retries"),
    ({"name": "t1", "params": TASK["params"], "variables": {"x": {"nested": 1}}}, "variables.x"),
    ({"name": "t 1", "params": TASK["params"]}, "body"),                                # unsafe name
    ({"name": "t1", "params": dict(TASK["params"], destination_extension="1:_:2")}, "params.destination_extension"),
    ({"params": TASK["params"]}, "name"),
    ("not an object", "body"),
])
def test_bad_task_is_refused_with_the_field_and_nothing_written(api, r, notes, body, field):
    assert_error(api.post("/api/v1/tasks", json=body), 400, "invalid", field)
    assert r.dbsize() == 0 and notes() == []


def test_bad_patch_and_put_write_nothing(api, r, notes):
    api.post("/api/v1/tasks", json=dict(TASK, name="t1"))
    before, _ = r.hget("cti_queue_dialer_task@template", "t1"), notes()
    assert_error(api.patch("/api/v1/tasks/t1", json={"params": {"line_group": None}}), 400, "invalid",
                 "params.line_group")
    assert_error(api.put("/api/v1/tasks/t1", json={"params": dict(TASK["params"], work_week=[9])}), 400, "invalid",
                 "params.work_week")
    assert_error(api.patch("/api/v1/tasks/t1", json={"parms": {}}), 400, "invalid", "parms")
    assert_error(api.patch("/api/v1/tasks/nope", json={"params": {"limit": 1}}), 404, "not_found")
    assert r.hget("cti_queue_dialer_task@template", "t1") == before and notes() == []


ENTRIES = [
    ("lines", "cti_line@test", {"params": {"gateway": "sofia/gateway/gw1/", "limit": 10}},
     {"params": {"limit": 20}}, [({"params": {"gateway": "sofia/gateway/gw1/"}}, "params.limit"),
                                ({"params": {"gateway": "sofia/gw{x}/", "limit": 1}}, "params.gateway"),
                                ({"params": {"gateway": "sofia/gateway/gw1/", "limit": 1, "speed": 2}}, "params.speed"),
                                ({"params": {"gateway": "g/", "limit": 1}, "variables": {"v": "a|b"}}, "variables.v")]),
    ("groups", "cti_line_group@test", {"lines": ["l1"]}, {"lines": ["l1", "l2"]},
     [({"lines": ["l1"], "colour": 1}, "colour"), ({"lines": ["l1", "l1"]}, "body"), ({"lines": "l1 l2"}, "lines")]),
    # mod_cti's group, as its docs write it.
    ("groups", "cti_line_group@test",
     {"enable": True, "rest": 1000, "redialer_count": 3,
      "redialer_rule": [{"hangup_sipcode": [408, 480], "hangup_cause": [19], "duration": 10, "bill": 1}],
      "no_redialer_rule": [{"hangup_sipcode": [486], "hangup_cause": [17]}], "line": [["a", "b"], ["c"]]},
     {"rest": 2000},
     [({"line": ["a"], "redialer_rule": 5}, "redialer_rule"), ({"line": ["a"], "rest": -1}, "rest")]),
    ("schedule-configs", "cti_schedule_dialer_config@test",
     {"params": {"line_group": ["g1"], "destination_extension": "8888"}}, {"params": {"destination_extension": "7"}},
     [({"params": {"line_group": ["g1"]}}, "params.destination_extension"),
      ({"params": {"line_group": ["g1"], "destination_extension": "1", "x": 1}}, "params.x")]),
]


@pytest.mark.parametrize("path,key,good,patch,bad", ENTRIES, ids=[e[0] for e in ENTRIES])
def test_entry_lifecycle_and_bad_input(api, r, notes, path, key, good, patch, bad):
    table = key.split("@")[0]
    base = "/api/v1/" + path
    resp = api.post(base, json=dict(good, name="e1"))
    assert resp.status_code == 201, resp.get_json()
    assert json.loads(r.hget(key, "e1")) == good
    assert notes() == [("config@all", {"type": "config_change", "table": table, "key": "e1"})]
    assert_error(api.post(base, json=dict(good, name="e1")), 409, "conflict")
    assert api.get(base + "/e1").get_json() == {"name": "e1", "config": good}
    items = api.get(base).get_json()["items"]
    assert [i["name"] for i in items] == ["e1"]
    assert api.patch(base + "/e1", json=patch).status_code == 200
    assert json.loads(r.hget(key, "e1")) != good
    assert api.put(base + "/e2", json=good).status_code == 201
    assert api.put(base + "/e2", json=good).status_code == 200
    assert len(notes()) == 3
    for body, field in bad:
        before = r.hgetall(key)
        assert_error(api.put(base + "/e3", json=body), 400, "invalid", field)
        assert_error(api.post(base, json=dict(body, name="e4")), 400, "invalid", field)
        assert r.hgetall(key) == before
    assert notes() == []
    assert api.delete(base + "/e1").status_code == 200 and r.hget(key, "e1") is None
    assert_error(api.delete(base + "/e1"), 404, "not_found")
    assert_error(api.get(base + "/e1"), 404, "not_found")


def test_line_list_reports_capacity_use_and_faults(api, r):
    api.put("/api/v1/lines/l1", json={"params": {"gateway": "sofia/gateway/gw1/", "limit": 10}})
    r.hset("cti_line@test", "bad", '{"params": {"gateway": "x/"}}')     # written around the API
    r.zadd("cti_dialer_line_lease@test:l1", {"c1": 9e9, "c2": 9e9, "old": 1})
    items = {i["name"]: i for i in api.get("/api/v1/lines").get_json()["items"]}
    assert items["l1"] == {"name": "l1", "enable": True, "capacity": 10, "in_use": 2, "faulted": False,
                           "out_of_service_until": None, "consecutive_failures": 0,
                           "error": None, "config": {"params": {"gateway": "sofia/gateway/gw1/", "limit": 10}}}
    assert items["bad"]["faulted"] is True and "limit" in items["bad"]["error"]
    # Fault detection's state (written by the daemons' LINE_RESULT) shows too.
    r.hset("cti_dialer_line_state@test", mapping={"out:l1": 1234.5, "failures:l1": 3})
    items = {i["name"]: i for i in api.get("/api/v1/lines").get_json()["items"]}
    assert (items["l1"]["faulted"], items["l1"]["out_of_service_until"], items["l1"]["consecutive_failures"]) == (
        True, 1234.5, 3)
