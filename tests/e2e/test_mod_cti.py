"""mod_cti's dialer schema end to end: cps, line rest, fault detection, tiers, group redial rules.

Measured at the switch (the simulator's originate log), with the real
daemon processes against redis-server.
"""
import collections
import json
import subprocess
import sys
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cti_dialer.fsim import Outcome
from cti_dialer.redis_server import free_port
from tests.conftest import wait_for
from tests.e2e.conftest import DOMAIN, publish, push, put_task, rejected, results, task_params, wait_settled

pytestmark = pytest.mark.e2e
LINE_STATE = "cti_dialer_line_state@%s" % DOMAIN


def put_lines(r, lines, groups):
    """mod_cti-style JSON, written as an operator would: lines then groups, one notification each."""
    for name, params in lines.items():
        r.hset("cti_line@%s" % DOMAIN, name, json.dumps({"params": params}))
    for name, doc in groups.items():
        r.hset("cti_line_group@%s" % DOMAIN, name, json.dumps(doc))
    publish(r, "cti_line")
    publish(r, "cti_line_group")


def gw(name, count=10, **params):
    return {"dialstring": "sofia/gateway/%s/${destination_number}" % name, "count": count, **params}


def sent(sim, gateway=None):
    return [o for o in sim.originates() if gateway is None or "/%s/" % gateway in o.raw]


def rate_over(times, seconds):
    """Calls started in the first ``seconds`` after the first one, per second; and the busiest 1 s window."""
    start = times[0]
    inside = [t for t in times if t - start < seconds]
    busiest = max(sum(1 for u in inside if t <= u < t + 1.0) for t in inside)
    return len(inside) / seconds, busiest


# --- cps ------------------------------------------------------------------------------------

@pytest.mark.parametrize("hosts", [1, 2])
def test_cps_paces_a_task_across_every_host(r, sim, daemon_factory, fault_report, hosts):
    sim.default_outcome = Outcome.answer(hold_ms=200)
    put_lines(r, {"l1": gw("gw1", count=200)}, {"g1": {"line": ["l1"]}})
    names = ["fs%d" % (i + 1) for i in range(hosts)]
    for name in names:
        daemon_factory(host=name)
    push(r, "queue:t1", *[str(60000 + i) for i in range(130)])
    put_task(r, "t1", task_params(limit=100, cps=5))
    wait_for(lambda: len(sim.originates()) >= 106, 40, message="106 originates")
    times = sorted(o.ts for o in sim.originates())
    rate, busiest = rate_over(times, 20.0)
    fault_report("cps 5 over 20 s, %d host(s): %.2f calls/s, busiest second %d calls" % (hosts, rate, busiest))
    assert 4.5 <= rate <= 5.5
    assert busiest <= 6                   # smooth: never a burst at a second boundary
    if hosts == 2:
        by_host = collections.Counter(res["host"] for res in results(r))
        assert set(by_host) == set(names)   # both dialed, and the total is still the task's cps


# --- rest -----------------------------------------------------------------------------------

def test_line_rest_spaces_calls_on_the_line_across_hosts(r, sim, daemon_factory, fault_report):
    sim.default_outcome = Outcome.answer(hold_ms=100)
    put_lines(r, {"fxo": gw("port1", count=5, rest=400)}, {"g1": {"line": ["fxo"], "rest": 0}})
    daemon_factory(host="fs1")
    daemon_factory(host="fs2")
    # One task per host, both on the one line: only a rest shared in Redis keeps them apart.
    push(r, "queue:t1", *[str(61000 + i) for i in range(4)])
    push(r, "queue:t2", *[str(61100 + i) for i in range(4)])
    put_task(r, "t1", task_params(limit=5), scope="fs1")
    put_task(r, "t2", task_params(limit=5, number_queue="queue:t2"), scope="fs2")
    wait_settled(r, hosts=("fs1", "fs2"), timeout=30)
    wait_settled(r, task="t2", queue="queue:t2", hosts=("fs1", "fs2"), timeout=30)
    times = sorted(o.ts for o in sent(sim, "port1"))
    gaps = [b - a for a, b in zip(times, times[1:])]
    fault_report("line rest 400 ms, 2 hosts, 8 calls: gaps %.3f..%.3f s" % (min(gaps), max(gaps)))
    assert len(times) == 8 and min(gaps) >= 0.37       # the switch sees the rest (a few ms of send jitter)
    assert collections.Counter(res["host"] for res in results(r)) == {"fs1": 4, "fs2": 4}


def test_group_rest_spaces_calls_through_the_group(r, sim, daemon):
    sim.default_outcome = Outcome.answer(hold_ms=1000)      # calls overlap: both lines carry some
    put_lines(r, {"a": gw("ga"), "b": gw("gb")}, {"g1": {"line": ["a", "b"], "rest": 300}})
    push(r, "queue:t1", *[str(62000 + i) for i in range(6)])
    put_task(r, "t1", task_params(limit=5))
    wait_settled(r, timeout=20)
    times = sorted(o.ts for o in sim.originates())
    assert len(times) == 6 and min(b - a for a, b in zip(times, times[1:])) >= 0.27
    assert {o.raw.split("/")[2] for o in sim.originates()} == {"ga", "gb"}


# --- fault detection ---------------------------------------------------------------------------

def test_a_failing_line_is_taken_out_on_every_host_and_comes_back_after_its_probe(r, sim, daemon_factory,
                                                                                 fault_report):
    sim.default_outcome = Outcome.answer(hold_ms=150)
    sim.script_gateway("bad", Outcome.fail("NORMAL_TEMPORARY_FAILURE", channel=True, sip_code=503))
    put_lines(r, {"bad": gw("bad", count=1, fault_threshold=3, fault_try_interval=1500,
                            fault_condition={"connect_time": 3000}),
                  "good": gw("good", count=1)},
              {"g1": {"line": [["bad", "good"]]}})
    port = free_port()
    one = daemon_factory(host="fs1", extra={"metrics": {"listen": "127.0.0.1:%d" % port}})
    two = daemon_factory(host="fs2")
    push(r, "queue:t1", *[str(63000 + i) for i in range(200)])
    put_task(r, "t1", task_params(limit=2))
    wait_for(lambda: r.hexists(LINE_STATE, "out:bad"), 20, message="bad out of service")
    # Visible to the operator: status, metrics (as of the next heartbeat) and the log.
    shown = subprocess.run([sys.executable, "-m", "cti_dialer.cli", "status", "-c", str(one.cfg)],
                           capture_output=True, text=True, timeout=30).stdout
    assert "line bad: OUT OF SERVICE, next probe" in shown
    wait_for(lambda: line_gauge(port, "cti_dialer_line_out_of_service", "bad") == 1, 10, message="metric")
    out_at = max(o.ts for o in sent(sim, "bad"))
    before = len(sent(sim, "bad"))
    assert 3 <= before <= 4                         # the threshold (a call already placed may finish after)
    # While out, both hosts keep dialing on the good line only; the first probe fails too.
    wait_for(lambda: "next probe in" in one.log() + two.log(), 20, message="a failed probe")
    probes = [o.ts for o in sent(sim, "bad") if o.ts > out_at]
    assert len(probes) == 1 and probes[0] - out_at >= 1.4
    good_meanwhile = [o for o in sent(sim, "good") if out_at < o.ts < probes[0]]
    assert len(good_meanwhile) >= 3
    # The carrier comes back: the next probe succeeds and the line carries calls again.
    sim.script_gateway("bad", Outcome.answer(hold_ms=150))
    wait_for(lambda: "line bad back in service" in one.log() + two.log(), 20, message="bad back in service")
    wait_for(lambda: len([o for o in sent(sim, "bad") if o.ts > probes[0]]) >= 4, 20, message="calls on bad again")
    assert not r.hexists(LINE_STATE, "out:bad") and not r.hexists(LINE_STATE, "failures:bad")
    logs = one.log() + two.log()
    assert "line bad out of service after 3 consecutive failed calls" in logs
    r.delete("queue:t1")
    wait_settled(r, hosts=("fs1", "fs2"), timeout=20)
    fault_report("fault: out after %d calls, probe after %.2f s, good line carried %d calls meanwhile"
                 % (before, probes[0] - out_at, len(good_meanwhile)))


def line_gauge(port, name, line):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("line") == line:
                return sample.value
    return None


def test_calls_that_rang_long_enough_are_no_line_fault(r, sim, daemon):
    sim.default_outcome = Outcome.no_answer(ring_ms=600)
    put_lines(r, {"l1": gw("gw1", fault_threshold=2, fault_try_interval=60000,
                           fault_condition={"connect_time": 300})}, {"g1": {"line": ["l1"]}})
    push(r, "queue:t1", *[str(64000 + i) for i in range(5)])
    put_task(r, "t1", task_params(limit=1))
    wait_settled(r, timeout=20)
    assert len(sim.originates()) == 5 and not r.hexists(LINE_STATE, "out:l1")


# --- tiers ----------------------------------------------------------------------------------

def test_the_backup_tier_carries_calls_only_while_the_first_is_full_or_out(r, sim, daemon):
    sim.default_outcome = Outcome.answer(hold_ms=1500)
    put_lines(r, {"p1": gw("prim", count=2, fault_threshold=1, fault_try_interval=60000), "b1": gw("back", count=5)},
              {"g1": {"line": [["p1"], ["b1"]]}})
    push(r, "queue:t1", "65001", "65002")
    put_task(r, "t1", task_params(limit=4))
    wait_settled(r, timeout=20)
    assert [o.raw.split("/")[2] for o in sim.originates()] == ["prim", "prim"]      # room in the first tier
    push(r, "queue:t1", "65003", "65004", "65005", "65006")
    wait_settled(r, timeout=20)
    tiers = collections.Counter(o.raw.split("/")[2] for o in sim.originates()[2:])
    assert tiers == {"prim": 2, "back": 2}                                          # the first full: backup
    sim.script_gateway("prim", Outcome.fail("NETWORK_OUT_OF_ORDER", channel=True))
    push(r, "queue:t1", "65007")
    wait_settled(r, timeout=20)
    wait_for(lambda: r.hexists(LINE_STATE, "out:p1"), 10, message="p1 out")
    push(r, "queue:t1", "65008", "65009")
    wait_settled(r, timeout=20)
    last = [o.raw.split("/")[2] for o in sim.originates()[7:]]
    assert last == ["back", "back"]                                                  # the first out: backup


# --- group redial rules --------------------------------------------------------------------

RULED_GROUP = {
    "line": ["l1"], "redialer_count": 1,
    "redialer_rule": [{"hangup_sipcode": [503]}, {"hangup_cause": [21]},
                      {"hangup_cause": [19], "duration": 1}, {"hangup_cause": [16], "bill": 2}],
    "no_redialer_rule": {"hangup_sipcode": [486]},
}
SCRIPTS = {
    "66001": (Outcome.fail("NORMAL_TEMPORARY_FAILURE", channel=True, sip_code=503), 2),   # SIP code rule
    "66002": (Outcome.reject(), 2),                                                        # Q.850 21 rule
    "66003": (Outcome.no_answer(ring_ms=200), 2),                                          # duration rule
    "66004": (Outcome.no_answer(ring_ms=1600), 1),                                         # too long: none
    "66005": (Outcome.answer(hold_ms=400), 2),                                             # bill rule
    "66006": (Outcome.answer(hold_ms=3300), 1),                                            # billed 3 s: none
    "66007": (Outcome.busy(), 1),               # 486: no-redial rule wins over the task's busy strategy
    "66008": (Outcome.busy(sip_code=600), 3),   # no group rule matches: the task's strategy (busy, 2 more)
}


def test_group_redial_rules_each_field_and_the_task_strategy_after_them(r, sim, daemon, fault_report):
    for number, (outcome, _) in SCRIPTS.items():
        sim.script_number(number, outcome)
    put_lines(r, {"l1": gw("gw1")}, {"g1": RULED_GROUP})
    push(r, "queue:t1", *SCRIPTS)
    put_task(r, "t1", task_params(limit=8, redial={"busy": {"count": 2, "interval": 0.2}}))
    expected = sum(n for _, n in SCRIPTS.values())
    wait_for(lambda: len(results(r)) >= expected, 30, message="%d results" % expected)
    wait_settled(r, timeout=20)
    dialed = collections.Counter(o.number for o in sim.originates())
    assert dialed == {number: n for number, (_, n) in SCRIPTS.items()}
    by_number = collections.defaultdict(list)
    for res in results(r):
        by_number[res["number"]].append(res)
    assert by_number["66001"][0]["sip_code"] == "503" and by_number["66001"][0]["redial_class"] == "group"
    assert by_number["66002"][0]["q850"] == "21"
    assert by_number["66007"][0]["sip_code"] == "486" and "next_due" not in by_number["66007"][0]
    assert by_number["66008"][0]["redial_class"] == "busy"
    assert not rejected(r)
    fault_report("redial rules: %d numbers, %d originates as the rules say" % (len(SCRIPTS), sum(dialed.values())))


# --- mod_cti's documented examples, unchanged --------------------------------------------

MOD_CTI_LINE = {"params": {"count": 1, "rest": 1000, "fault_threshold": 0, "fault_try_interval": 0,
                           "fault_condition": {"connect_time": 3000},
                           "dialstring": "sofia/gateway/ims/${destination_number}"},
                "variables": {"origination_caller_id_number": "4001"}}
MOD_CTI_GROUP = {"enable": True, "rest": 1000, "redialer_count": 3,
                 "redialer_rule": [{"hangup_sipcode": [408, 480], "hangup_cause": [19], "duration": 10, "bill": 1}],
                 "no_redialer_rule": [{"hangup_sipcode": [486], "hangup_cause": [17]}],
                 "line": [["first1", "first2"], ["second1", "second2"]]}


def test_a_mod_cti_configuration_from_its_docs_works_unchanged(r, sim, daemon):
    sim.default_outcome = Outcome.answer(hold_ms=100)
    for name in ("first1", "first2", "second1", "second2"):
        r.hset("cti_line@%s" % DOMAIN, name, json.dumps(MOD_CTI_LINE))
    r.hset("cti_line_group@%s" % DOMAIN, "ims", json.dumps(MOD_CTI_GROUP))
    publish(r, "cti_line")
    publish(r, "cti_line_group")
    push(r, "queue:t1", "67001", "67002", "67003")
    put_task(r, "t1", task_params(line_group=["ims"], limit=2, cps=2,
                                  work_hour=[{"begin": "00:00", "end": "23:59:59", "wday": -1}]))
    wait_settled(r, timeout=20)
    res = results(r)
    assert sorted(x["number"] for x in res) == ["67001", "67002", "67003"] 
    assert all(x["answered"] == "1" for x in res)
    assert {x["line"] for x in res} <= {"first1", "first2"}       # the first tier had room each time
    times = sorted(o.ts for o in sim.originates())
    assert min(b - a for a, b in zip(times, times[1:])) >= 0.95    # the group's rest (1 s) and cps 2
    assert all(o.variables.get("origination_caller_id_number") == "4001" for o in sim.originates())
    assert not rejected(r)
