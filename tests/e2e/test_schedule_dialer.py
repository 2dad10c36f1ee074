"""Scheduled calls end to end: ZADD cti_schedule_dialer_number@<domain> in, originates out."""
import json
import time

import pytest

from cti_dialer.fsim import Outcome
from tests.conftest import wait_for
from tests.e2e.conftest import DOMAIN, basic_setup, publish, put_line, rejected, results

pytestmark = pytest.mark.e2e
ZSET = "cti_schedule_dialer_number@%s" % DOMAIN
CONFIGS = "cti_schedule_dialer_config@%s" % DOMAIN


def put_config(r, name, line_group=("g1",), extension="8888", variables=None, notify=True):
    doc = {"params": {"line_group": list(line_group), "destination_extension": extension}}
    if variables is not None:
        doc["variables"] = variables
    r.hset(CONFIGS, name, json.dumps(doc))
    if notify:
        publish(r, "cti_schedule_dialer_config", name)


def member(number, config="c1", expires=0, variables=None):
    doc = {"params": {"number": number, "expires": expires, "config": config}}
    if variables is not None:
        doc["variables"] = variables
    return json.dumps(doc)


def schedule(r, at, *members):
    r.zadd(ZSET, {m: at for m in members})


def wait_results(r, n, timeout=10):
    return wait_for(lambda: len(results(r)) >= n and results(r), timeout, message="%d results" % n)


def test_due_member_dialed_with_config_and_recorded(r, sim, daemon):
    basic_setup(r)
    put_config(r, "c1", variables={"origination_caller_id_number": "4001"})
    daemon.wait_log("config_change on config@all: table=cti_schedule_dialer_config key=c1 applied")
    now = time.time()
    schedule(r, now - 5, member("20001"))
    res = wait_results(r, 1)
    o = sim.originates()[0]
    assert o.number == "20001" and o.extension == "8888"
    assert o.variables["origination_caller_id_number"] == "4001"
    assert res[0]["kind"] == "schedule" and res[0]["config"] == "c1" and res[0]["number"] == "20001"
    assert float(res[0]["scheduled_at"]) == pytest.approx(now - 5, abs=0.01)
    assert res[0]["answered"] == "1" and res[0]["line"] == "l1"
    assert r.zcard(ZSET) == 0 and r.hlen("cti_dialer_inflight@fs1") == 0


def test_future_member_dialed_on_time_not_before(r, sim, daemon):
    basic_setup(r)
    put_config(r, "c1")
    at = time.time() + 1.5
    schedule(r, at, member("20101"))
    wait_for(lambda: sim.originates(), 10, message="the originate")
    sent = sim.originates()[0].ts
    assert at <= sent < at + 1.0, "dialed %.3fs after its time" % (sent - at)


def test_expired_member_not_called(r, sim, daemon):
    basic_setup(r)
    put_config(r, "c1")
    now = time.time()
    schedule(r, now - 10, member("20201", expires=int(now - 5)))
    schedule(r, now - 10, member("20202", expires=int(now + 600)))
    res = wait_results(r, 2)
    by_number = {x["number"]: x for x in res}
    assert by_number["20201"]["cause"] == "EXPIRED" and by_number["20201"]["verdict"] == "dropped"
    assert by_number["20202"]["cause"] == "NORMAL_CLEARING"
    assert [o.number for o in sim.originates()] == ["20202"]


def test_missing_config_and_malformed_members_rejected(r, sim, daemon):
    basic_setup(r)
    put_config(r, "c1")
    r.hset(CONFIGS, "broken", "{not json")
    publish(r, "cti_schedule_dialer_config", "broken")
    now = time.time()
    bad = [member("20301", config="nope"), member("20302", config="broken"), "20303", "{oops",
           member("1000 &system(touch /tmp/x)"), member("20304", variables={"x": "a}b"}),
           json.dumps({"params": {"number": "20305"}})]
    schedule(r, now - 1, *bad)
    schedule(r, now - 1, member("20399"))
    res = wait_results(r, len(bad) + 1)
    assert [o.number for o in sim.originates()] == ["20399"]
    rej = {x["raw"]: x for x in rejected(r) if x["kind"] == "number"}
    assert set(rej) == set(bad)
    assert "does not exist" in rej[bad[0]]["reason"]
    assert "is invalid" in rej[bad[1]]["reason"]
    assert all(x["source"] == ZSET for x in rej.values())
    assert sum(1 for x in res if x["cause"] == "REJECTED_INPUT") == len(bad)
    assert r.zcard(ZSET) == 0                      # never retried forever
    assert [x for x in rejected(r) if x["kind"] == "schedule_config"][0]["name"] == "broken"


def _occupy_the_only_line(r, sim, daemon):
    basic_setup(r, lines=(("l1", "sofia/gateway/gw1/", 1),))
    put_config(r, "c1")
    sim.script_number("20400", Outcome.answer(ring_ms=0, hold_ms=10000))
    schedule(r, time.time() - 1, member("20400"))
    wait_for(lambda: len(sim.active_channels()) == 1, 10)


def test_no_line_with_expires_is_written_back_60s_later(r, sim, daemon):
    _occupy_the_only_line(r, sim, daemon)
    now = time.time()
    m = member("20401", expires=int(now + 600))
    schedule(r, now - 1, m)
    wait_for(lambda: (r.zscore(ZSET, m) or 0) > now + 30, 10, message="written back")
    assert r.zscore(ZSET, m) == pytest.approx(now + 60, abs=3)
    assert [o.number for o in sim.originates()] == ["20400"]
    assert results(r) == []


def test_no_line_with_expires_zero_or_too_close_is_dropped(r, sim, daemon):
    _occupy_the_only_line(r, sim, daemon)
    now = time.time()
    schedule(r, now - 1, member("20402", expires=0), member("20403", expires=int(now + 30)))
    res = wait_results(r, 2)
    assert {x["number"]: x["cause"] for x in res} == {"20402": "NO_LINE_AVAILABLE",
                                                      "20403": "NO_LINE_AVAILABLE"}
    assert all(x["verdict"] == "dropped" for x in res)
    assert r.zcard(ZSET) == 0


def test_precedence_number_config_line_and_failover(r, sim, daemon):
    basic_setup(r, lines=(("down", "sofia/gateway/gwdown/", 5), ("up", "sofia/gateway/gwup/", 5)),
                groups=(("g1", ("down",)), ("g2", ("up",))))
    put_line(r, "up", "sofia/gateway/gwup/", limit=5, variables={"v_line": "line", "v_all": "line"})
    sim.script_gateway("gwdown", Outcome.fail("GATEWAY_DOWN"))
    put_config(r, "c1", line_group=("g1", "g2"),
               variables={"v_cfg": "config", "v_all": "config", "v_num": "config"})
    schedule(r, time.time() - 1, member("20501", variables={"v_num": "number", "v_all": "number",
                                                              "v_only": "number"}))
    res = wait_results(r, 1)
    assert [o.endpoint for o in sim.originates()] == ["gwdown", "gwup"]
    v = sim.originates()[1].variables
    assert (v["v_only"], v["v_num"], v["v_cfg"], v["v_all"], v["v_line"]) == (
        "number", "config", "config", "line", "line")
    assert res[0]["try"] == "2" and res[0]["attempt"] == "1" and res[0]["line"] == "up"


def test_config_hot_reload(r, sim, daemon):
    basic_setup(r)
    put_config(r, "c1", extension="1000")
    schedule(r, time.time() - 1, member("20601"))
    wait_results(r, 1)
    put_config(r, "c1", extension="2000", notify=False)
    changed = time.time()
    publish(r, "cti_schedule_dialer_config", "c1", host="fs1")
    daemon.wait_log("config_change on config@fs1: table=cti_schedule_dialer_config key=c1 applied")
    schedule(r, time.time(), member("20602"))
    wait_results(r, 2)
    o = sim.originates()[1]
    assert o.extension == "2000" and o.ts - changed < 1.0


def test_two_daemons_race_each_member_dialed_once(r, sim, daemon_factory):
    sim.default_outcome = Outcome.answer(ring_ms=0, hold_ms=20)
    basic_setup(r, lines=(("l1", "sofia/gateway/gw1/", 200),))
    put_config(r, "c1", notify=False)
    numbers = [str(30000 + i) for i in range(300)]
    daemon_factory(host="fs1")
    daemon_factory(host="fs2")
    # Due times spread over 2 s: both daemons poll many times while members
    # become due, so both claim some and race for the rest.
    start = time.time() + 0.5
    r.zadd(ZSET, {member(n): start + i * 0.007 for i, n in enumerate(numbers)})
    res = wait_results(r, 300, timeout=30)
    dialed = [o.number for o in sim.originates()]
    assert sorted(dialed) == numbers                       # each exactly once
    hosts = {x["host"] for x in res}
    assert hosts == {"fs1", "fs2"}, "both daemons should have claimed some"
    assert sorted(x["number"] for x in res) == numbers


def test_kill9_after_claim_loses_nothing(r, sim, daemon_factory):
    # Lines for every member: with fewer, the seed's rule would push the
    # rest 60 s into the future (tested above).
    sim.default_outcome = Outcome.answer(ring_ms=0, hold_ms=300)
    basic_setup(r, lines=(("l1", "sofia/gateway/gw1/", 50),))
    put_config(r, "c1", notify=False)
    numbers = [str(31000 + i) for i in range(20)]
    d = daemon_factory()
    schedule(r, time.time() - 1, *[member(n, expires=int(time.time() + 3600)) for n in numbers])
    wait_for(lambda: len(sim.originates()) >= 3, 10)
    d.kill9()
    daemon_factory()
    res = wait_results(r, 20, timeout=60)
    assert sorted(o.number for o in sim.originates()) == numbers
    assert sorted(x["number"] for x in res) == numbers
