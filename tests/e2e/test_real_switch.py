"""What a real FreeSWITCH does that the old simulator did not, against the real daemon.

Each test counts (lost, rang twice, wrongly blamed) and fails if the
daemon's fix is undone; the simulator reproduces the captured behaviour
(tests/fsim guard that side).
"""
import collections

import pytest

from cti_dialer.fsim import Outcome
from tests.conftest import wait_for
from tests.e2e.conftest import basic_setup, push, put_task, rejected, results, task_params

pytestmark = pytest.mark.e2e


def rings(sim):
    """Originates the switch really ran (not refused, not swallowed by a shutdown), per number."""
    return collections.Counter(o.number for o in sim.originates()
                               if o.cause != "DESTINATION_OUT_OF_ORDER" and o.outcome_kind != "shutdown")


def test_enterprise_separator_and_retries_never_reach_the_switch(r, sim, daemon):
    basic_setup(r)
    sim.default_outcome = Outcome.busy()
    put_task(r, "t1", task_params())
    push(r, "queue:t1",
         {"params": {"number": "2010"}, "variables": {"x_num": "a:_:loopback/1999"}},   # the captured injection
         {"params": {"number": "2011"}, "variables": {"originate_retries": "3"}},      # would ring a busy number 3 times
         {"params": {"number": "2012"}, "variables": {"x": "${uuid}"}},               # the switch would drop it
         {"params": {"number": "2014"}, "variables": {"record_post_process_exec_api": "system:rm -rf /"}},
         "2013")
    wait_for(lambda: len(results(r)) == 5, 10, message="five results")
    causes = {res["number"]: res["cause"] for res in results(r)}
    assert causes["2013"] == "USER_BUSY"
    assert [c for n, c in causes.items() if n != "2013"] == ["REJECTED_INPUT"] * 4
    reasons = " | ".join(x["reason"] for x in rejected(r))
    assert ":_:" in reasons and "originate_retries" in reasons and "${" in reasons
    assert "record_post_process_exec_api" in reasons
    assert rings(sim) == {"2013": 1}
    assert not any(o.enterprise or o.attempt > 1 for o in sim.originates())


def test_a_graceful_switch_restart_loses_no_number(r, sim, daemon, fault_report):
    basic_setup(r, lines=(("l1", "sofia/gateway/gw1/", 100),))
    sim.default_outcome = Outcome.answer(ring_ms=0, hold_ms=400)
    put_task(r, "t1", task_params(limit=20))
    numbers = [str(61000 + i) for i in range(80)]
    push(r, "queue:t1", *numbers)
    wait_for(lambda: len(results(r)) >= 10, 20, message="calls flowing")
    sim.shutdown(grace_ms=500)            # SHUTDOWN, SYSTEM_SHUTDOWN hangups, originates swallowed, disconnect
    wait_for(sim.is_down, 10, message="the switch down")
    daemon.wait_log("is shutting down")
    sim.restart()
    wait_for(lambda: len(results(r)) >= len(numbers), 60, message="a result for every number")
    res = results(r)
    per_number = collections.Counter(x["number"] for x in res)
    swallowed = [o.number for o in sim.originates() if o.outcome_kind == "shutdown"]
    lost = [n for n in numbers if n not in per_number]
    twice = [n for n, c in rings(sim).items() if c > 1]
    unknown = [x["number"] for x in res if x["cause"] == "UNKNOWN"]
    fault_report("graceful switch shutdown: N=%d lost=%d rang-twice=%d unknown=%d swallowed-originates=%d "
                 "ended-by-shutdown=%d" % (len(numbers), len(lost), len(twice), len(unknown), len(swallowed),
                                           sum(1 for x in res if x["cause"] == "SYSTEM_SHUTDOWN")))
    assert not lost and not twice and not unknown
    assert all(c == 1 for c in per_number.values())
    # Anything the switch swallowed was dialed again after the restart.
    assert all(rings(sim)[n] == 1 for n in swallowed)
    assert r.llen("queue:t1") == 0 and r.hlen("cti_dialer_inflight@fs1") == 0


def test_paced_under_the_switchs_sessions_per_second(r, sim, daemon_factory, fault_report):
    sim.sps = 30                          # the real window: 29 per second, per switch tick
    sim.default_outcome = Outcome.answer(ring_ms=0, hold_ms=0)
    daemon_factory()
    basic_setup(r, lines=(("l1", "sofia/gateway/gw1/", 1000),))
    put_task(r, "t1", task_params(limit=500))
    numbers = [str(62000 + i) for i in range(300)]
    push(r, "queue:t1", *numbers)
    wait_for(lambda: len(results(r)) >= len(numbers), 60, message="every result")
    originates = sim.originates()
    refused = [o for o in originates if o.cause == "DESTINATION_OUT_OF_ORDER"]
    accepted = sorted(o.ts for o in originates if o.cause != "DESTINATION_OUT_OF_ORDER")
    rate = (len(accepted) - 1) / (accepted[-1] - accepted[0])
    fault_report("sps 30, 300 numbers: %d originates, %d refused (%.1f %%), %.1f calls/s (%.0f %% of sps)"
                 % (len(originates), len(refused), 100.0 * len(refused) / len(originates), rate, rate / 30 * 100))
    assert len(refused) <= 0.03 * len(originates)
    assert rate >= 0.9 * 30
    assert rings(sim) == {n: 1 for n in numbers}


def test_switch_clock_lag_never_gives_negative_or_zero_durations(r, sim, daemon):
    basic_setup(r)
    sim.default_outcome = Outcome.answer(ring_ms=120, hold_ms=50)
    put_task(r, "t1", task_params())
    push(r, "queue:t1", *[str(63000 + i) for i in range(20)])
    wait_for(lambda: len(results(r)) == 20, 20, message="20 results")
    for res in results(r):
        assert float(res["answered_at"]) >= float(res["sent_at"])
        assert float(res["ended_at"]) >= float(res["answered_at"])
        assert 0.08 <= float(res["ring_time"]) <= 1.0, res


def test_answer_then_job_error_is_an_answered_call(r, sim, daemon):
    basic_setup(r)
    sim.script_number("64001", Outcome.cleared(ring_ms=20))
    put_task(r, "t1", task_params())
    push(r, "queue:t1", "64001")
    res = wait_for(lambda: results(r), 10, message="the result")
    assert res[0]["answered"] == "1" and res[0]["verdict"] == "answered"


def test_a_refused_second_leg_is_not_the_callees_no_answer(r, sim, daemon):
    basic_setup(r, lines=(("lb", "loopback/", 10),), groups=(("g1", ("lb",)),))
    sim.script_number("65001", Outcome.stalled())     # A leg up, B leg refused: waits out the timeout
    put_task(r, "t1", task_params(line_group=["g1"]), variables={"originate_timeout": "1"})
    push(r, "queue:t1", "65001")
    wait_for(lambda: sim.originates(), 10, message="the first originate")
    sim.script_number("65001", Outcome.answer(ring_ms=0, hold_ms=0))
    res = wait_for(lambda: results(r), 20, message="the result")
    assert (res[0]["cause"], res[0]["answered"], res[0]["try"]) == ("NORMAL_CLEARING", "1", "2")
    assert [o.outcome_kind for o in sim.originates()] == ["stalled", "answer"]
