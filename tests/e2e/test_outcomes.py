"""After the call: redial strategy, counters and status, do-not-call list, idempotent enqueue."""
import json
import time

import pytest

from cti_dialer.fsim import Outcome
from tests.conftest import wait_for
from tests.e2e.conftest import (DOMAIN, basic_setup, publish, push, put_task, rejected, results, task_params,
                                wait_settled)

pytestmark = pytest.mark.e2e
COUNTERS = "cti_dialer_counter@%s:t1" % DOMAIN
RETRIES = "cti_dialer_retry@%s:t1" % DOMAIN


def counters(r, key=COUNTERS):
    return {k.decode(): int(v) for k, v in r.hgetall(key).items()}


def status(r, task="t1"):
    raw = r.hget("cti_dialer_task_status@fs1", task)
    return json.loads(raw) if raw else {}


def n_results(r, n, timeout=15):
    return wait_for(lambda: len(results(r)) >= n and results(r), timeout, message="%d results" % n)


def test_redial_count_and_interval_honoured(r, sim, daemon):
    basic_setup(r)
    sim.script_number("50001", Outcome.busy())
    put_task(r, "t1", task_params(redial={"busy": {"count": 2, "interval": 1}}))
    push(r, "queue:t1", "50001")
    res = n_results(r, 3)
    wait_settled(r)
    assert len(results(r)) == 3 and r.zcard(RETRIES) == 0
    sent = [o.ts for o in sim.originates()]
    assert len(sent) == 3
    assert sent[1] - sent[0] >= 1.0 and sent[2] - sent[1] >= 1.0
    assert [x["attempt"] for x in res] == ["1", "2", "3"]
    assert all(x["cause"] == "USER_BUSY" for x in res)
    assert float(res[0]["next_due"]) == pytest.approx(float(res[0]["ended_at"]) + 1, abs=0.5)
    assert res[0]["redial_class"] == "busy" and "next_due" not in res[2]
    assert counters(r) == {"results": 3, "originates": 3, "failed": 3, "cause:USER_BUSY": 3,
                           "redials_scheduled": 2}


def test_no_redial_after_success_and_per_class_counts(r, sim, daemon):
    basic_setup(r)
    sim.script_number("50101", Outcome.no_answer())
    put_task(r, "t1", task_params(redial={"no_answer": {"count": 3, "interval": 0.5},
                                          "busy": {"count": 1, "interval": 0.5}}))
    push(r, "queue:t1", "50101")
    n_results(r, 1)
    sim.script_number("50101", Outcome.answer(ring_ms=0, hold_ms=0))
    res = n_results(r, 2)
    wait_settled(r)
    assert len(results(r)) == 2 and r.zcard(RETRIES) == 0
    assert [x["cause"] for x in res] == ["NO_ANSWER", "NORMAL_CLEARING"]
    assert res[1]["answered"] == "1" and res[1]["attempt"] == "2"


def test_no_redial_by_default(r, sim, daemon):
    basic_setup(r)
    sim.script_number("50201", Outcome.busy())
    put_task(r, "t1", task_params())
    push(r, "queue:t1", "50201")
    n_results(r, 1)
    wait_settled(r)
    assert len(sim.originates()) == 1 and r.zcard(RETRIES) == 0


def test_redials_wait_for_the_window(r, sim, daemon):
    basic_setup(r)
    sim.script_number("50301", Outcome.busy())
    strategy = {"busy": {"count": 1, "interval": 0.5}}
    put_task(r, "t1", task_params(redial=strategy))
    push(r, "queue:t1", "50301")
    n_results(r, 1)
    put_task(r, "t1", task_params(redial=strategy, enable=False))
    daemon.wait_log("enable=False")
    pending = r.zrange(RETRIES, 0, 0, withscores=True)
    assert pending, "the redial was taken while the task is paused"
    due = pending[0][1]
    # The redial falls due while the task is paused: a status the daemon wrote
    # well after that shows it has seen the redial and still holds it.
    wait_for(lambda: status(r).get("updated", 0) > due + 0.5, 10, message="a status written after the redial is due")
    assert (status(r)["state"], status(r)["redials_pending"]) == ("paused", 1)
    assert len(sim.originates()) == 1 and r.zcard(RETRIES) == 1
    put_task(r, "t1", task_params(redial=strategy))
    res = n_results(r, 2)
    assert res[1]["attempt"] == "2" and len(sim.originates()) == 2


def test_route_failure_redial_after_every_group(r, sim, daemon):
    basic_setup(r, lines=(("a", "sofia/gateway/gwa/", 5), ("b", "sofia/gateway/gwb/", 5)),
                groups=(("g1", ("a",)), ("g2", ("b",))))
    sim.script_gateway("gwa", Outcome.fail("GATEWAY_DOWN"))
    sim.script_gateway("gwb", Outcome.fail("GATEWAY_DOWN"))
    put_task(r, "t1", task_params(line_group=["g1", "g2"], redial={"route_failure": {"count": 1, "interval": 0.3}}))
    push(r, "queue:t1", "50401")
    res = n_results(r, 2)
    assert [(x["attempt"], x["try"], x["verdict"]) for x in res] == [("1", "2", "route"), ("2", "2", "route")]
    assert [o.endpoint for o in sim.originates()] == ["gwa", "gwb", "gwa", "gwb"]


def test_throttled_with_a_rule_ends_the_attempt(r, sim, daemon):
    basic_setup(r)
    sim.script_number("50501", Outcome.fail("DESTINATION_OUT_OF_ORDER", channel=False))
    put_task(r, "t1", task_params(redial={"throttled": {"count": 1, "interval": 0.3}}))
    push(r, "queue:t1", "50501")
    res = n_results(r, 2)
    wait_settled(r)
    assert len(sim.originates()) == 2 and len(results(r)) == 2
    assert all(x["verdict"] == "throttle" and x["cause"] == "DESTINATION_OUT_OF_ORDER" for x in res)


def test_invalid_strategy_is_a_task_error(r, sim, daemon):
    basic_setup(r)
    put_task(r, "t1", task_params(redial={"bussy": {"count": 1, "interval": 1}}))
    push(r, "queue:t1", "50601")
    wait_for(lambda: status(r).get("state") == "error", 10)
    assert "unknown outcome class 'bussy'" in status(r)["reason"]
    assert [x["name"] for x in rejected(r) if x["kind"] == "task"] == ["t1"]
    assert sim.originates() == []


def test_counters_equal_what_the_switch_saw(r, sim, daemon):
    basic_setup(r)
    numbers = [str(51000 + i) for i in range(30)]
    kinds = {}
    for i, n in enumerate(numbers):
        kind = ("answer", "busy", "no_answer")[i % 3]
        kinds[n] = kind
        if kind == "busy":
            sim.script_number(n, Outcome.busy())
        elif kind == "no_answer":
            sim.script_number(n, Outcome.no_answer())
    put_task(r, "t1", task_params(limit=5))
    push(r, "queue:t1", *numbers)
    n_results(r, 30)
    seen = sim.originates()
    c = wait_for(lambda: counters(r).get("results") == 30 and counters(r), 5)
    assert c["originates"] == len(seen) == 30
    assert c["answered"] == sum(1 for o in seen if o.answered) == 10
    assert c["cause:USER_BUSY"] == sum(1 for o in seen if o.cause == "USER_BUSY") == 10
    assert c["cause:NO_ANSWER"] == sum(1 for o in seen if o.cause == "NO_ANSWER") == 10
    assert c["failed"] == 20
    st = wait_for(lambda: status(r).get("dialed") == 30 and status(r), 5)
    assert (st["answered"], st["failed"], st["active"], st["queued"], st["state"]) == (10, 20, 0, 0, "running")
    assert st["counters"] == COUNTERS


def test_do_not_call_list(r, sim, daemon):
    basic_setup(r)
    r.sadd("cti_dnc@%s" % DOMAIN, "52001")
    sim.script_number("52002", Outcome.busy())
    put_task(r, "t1", task_params(limit=1, redial={"busy": {"count": 3, "interval": 0.5}}))
    push(r, "queue:t1", "52001", "52002")
    n_results(r, 2)
    r.sadd("cti_dnc@%s" % DOMAIN, "52002")     # listed after its first call: the redial is skipped
    res = n_results(r, 3)
    by = [(x["number"], x["cause"], x["verdict"]) for x in res]
    assert by == [("52001", "DNC_LISTED", "dropped"), ("52002", "USER_BUSY", "callee"),
                  ("52002", "DNC_LISTED", "dropped")]
    assert [o.number for o in sim.originates()] == ["52002"]
    assert counters(r)["cause:DNC_LISTED"] == 2


def test_duplicate_ids_are_not_dialed_twice(r, sim, daemon):
    basic_setup(r)
    put_task(r, "t1", task_params(limit=1))
    first = {"params": {"number": "53001", "id": "order-1"}}
    again = {"params": {"number": "53001", "id": "order-1"}, "variables": {"x": "resent"}}
    other = {"params": {"number": "53002", "id": "order-2"}}
    push(r, "queue:t1", first, again, other, "53003")
    res = n_results(r, 4)
    assert [(x["number"], x["id"], x["cause"]) for x in res] == [
        ("53001", "order-1", "NORMAL_CLEARING"), ("53001", "order-1", "DUPLICATE"),
        ("53002", "order-2", "NORMAL_CLEARING"), ("53003", "", "NORMAL_CLEARING")]
    assert [o.number for o in sim.originates()] == ["53001", "53002", "53003"]
    assert 0 < r.ttl("cti_dialer_seen@%s:2:t1:order-1" % DOMAIN) <= 86400     # 2: the length of "t1"


def test_results_stream_fields_and_consumer_group(r, sim, daemon):
    basic_setup(r)
    sim.default_outcome = Outcome.answer(ring_ms=200, hold_ms=1100)
    put_task(r, "t1", task_params())
    r.xgroup_create("cti_dialer_result@%s" % DOMAIN, "crm", id="0", mkstream=True)
    push(r, "queue:t1", {"params": {"number": "54001", "id": "c-9"}, "variables": {"customer": "42"}})
    n_results(r, 1)
    (stream, entries), = r.xreadgroup("crm", "worker-1", {"cti_dialer_result@%s" % DOMAIN: ">"}, count=10)
    fields = {k.decode(): v.decode() for k, v in entries[0][1].items()}
    for name in ("ts", "host", "kind", "task", "queue", "number", "id", "number_variables", "line",
                 "line_group", "uuid", "attempt", "try", "cause", "verdict", "answered", "billsec", "ring_time",
                 "claimed_at", "sent_at", "answered_at", "ended_at"):
        assert name in fields, name
    assert json.loads(fields["number_variables"]) == {"customer": "42"}
    # The switch bills whole seconds of its clock (end second - answer second):
    # 1.1 s of talk bills 1 or 2 depending on where the second boundary falls.
    assert fields["id"] == "c-9" and fields["queue"] == "queue:t1" and fields["billsec"] in ("1", "2")
    assert 0.15 <= float(fields["ring_time"]) < 1.0
    assert float(fields["sent_at"]) <= float(fields["answered_at"]) <= float(fields["ended_at"])


def test_schedule_redial_goes_back_into_the_schedule_set(r, sim, daemon):
    basic_setup(r)
    r.hset("cti_schedule_dialer_config@%s" % DOMAIN, "c1", json.dumps({"params": {
        "line_group": ["g1"], "destination_extension": "8888", "redial": {"no_answer": {"count": 1, "interval": 1}}}}))
    publish(r, "cti_schedule_dialer_config", "c1")
    sim.script_number("55001", Outcome.no_answer())
    r.zadd("cti_schedule_dialer_number@%s" % DOMAIN,
           {json.dumps({"params": {"number": "55001", "expires": 0, "config": "c1"}}): time.time()})
    res = n_results(r, 2)
    assert [(x["attempt"], x["cause"]) for x in res] == [("1", "NO_ANSWER"), ("2", "NO_ANSWER")]
    sent = [o.ts for o in sim.originates()]
    assert len(sent) == 2 and sent[1] - sent[0] >= 1.0
    assert counters(r, "cti_dialer_counter@%s:schedule:c1" % DOMAIN)["redials_scheduled"] == 1


def test_redials_shared_by_two_daemons_dialed_once_each(r, sim, daemon_factory):
    basic_setup(r, lines=(("l1", "sofia/gateway/gw1/", 50),))
    numbers = [str(56000 + i) for i in range(20)]
    for n in numbers:
        sim.script_number(n, Outcome.busy(ring_ms=20))
    put_task(r, "t1", task_params(limit=5, redial={"busy": {"count": 2, "interval": 0.3}}), notify=False)
    daemon_factory(host="fs1")
    daemon_factory(host="fs2")
    push(r, "queue:t1", *numbers)
    res = n_results(r, 60, timeout=30)
    wait_settled(r, hosts=("fs1", "fs2"))
    dialed = sorted(o.number for o in sim.originates())
    assert dialed == sorted(numbers * 3)                 # first call and two redials, no more, no less
    assert sorted(x["number"] for x in results(r)) == sorted(numbers * 3)
    per_number = {}
    for x in res:
        per_number.setdefault(x["number"], []).append(x["attempt"])
    assert all(sorted(v) == ["1", "2", "3"] for v in per_number.values())
    assert {x["host"] for x in res} == {"fs1", "fs2"}


def test_ids_of_different_tasks_never_collide(r, sim, daemon, fault_report):
    basic_setup(r)
    put_task(r, "a:b", task_params(number_queue="queue:ab"))
    put_task(r, "a", task_params(number_queue="queue:a"))
    push(r, "queue:ab", {"params": {"number": "55001", "id": "x"}})
    push(r, "queue:a", {"params": {"number": "55002", "id": "b:x"}})     # the same key before the fix
    res = n_results(r, 2)
    causes = sorted((x["number"], x["cause"]) for x in res)
    fault_report("ids across tasks: (a:b, x) and (a, b:x) -> %s" % causes)
    assert causes == [("55001", "NORMAL_CLEARING"), ("55002", "NORMAL_CLEARING")]
    assert sorted(o.number for o in sim.originates()) == ["55001", "55002"]
