"""Dialing for agents: progressive and predictive pacing against the simulator's mod_callcenter, and machines.

Time is compressed 60 times: a 60 s talk is 1 s, an hour is a minute, the
US rule's 2 s greeting window is rounded up to ``agent_wait`` 0.05 s (3 s).
"""
import collections
import json
import time
import urllib.request

import pytest

from cti_dialer.fsim import Outcome, OutcomeMix
from cti_dialer.redis_server import free_port
from tests.conftest import wait_for
from tests.e2e.conftest import basic_setup, push, put_task, results, task_params, wait_settled

pytestmark = pytest.mark.e2e
QUEUE = "sales@default"


def agents(sim, n, talk_ms, wrap_up_ms=0, patience_ms=None):
    sim.callcenter.add_queue(QUEUE, "8888", patience_ms=patience_ms)
    for i in range(n):
        sim.callcenter.add_agent("agent%02d" % i, QUEUE, talk_ms=talk_ms, wrap_up_ms=wrap_up_ms)


def test_progressive_never_has_more_calls_waiting_than_free_agents(r, sim, daemon_factory, fault_report):
    port = free_port()
    daemon_factory(extra={"metrics": {"listen": "127.0.0.1:%d" % port}})
    agents(sim, 10, talk_ms=400)
    sim.default_outcome = OutcomeMix([(5, Outcome.answer(ring_ms=150, hold_ms=None)),
                                      (5, Outcome.no_answer(ring_ms=250))], seed=7)
    basic_setup(r, lines=(("l1", "sofia/gateway/gw1/", 100),))
    push(r, "queue:t1", *[str(71000 + i) for i in range(80)])
    put_task(r, "t1", task_params(limit=50, pacing={"mode": "progressive", "queue": QUEUE, "agent_wait": 0.05}))
    wait_settled(r, timeout=60)
    stats = sim.callcenter.stats(QUEUE)
    res = results(r)
    live = [x for x in res if x["answered"] == "1"]
    abandoned = [x for x in live if x["abandoned"] == "1"]
    fault_report("progressive, 10 agents: %d calls, %d live, most waiting at once %d, abandoned %d"
                 % (len(res), len(live), stats["max_waiting"], len(abandoned)))
    assert len(res) == 80 and stats["bridged"] >= 1
    assert stats["max_waiting"] <= 10
    assert len(abandoned) <= 1           # ratio 1: an answer finds its agent (one race at most)
    # Visible to the operator: the task status and the metrics.
    def status():
        return json.loads(r.hget("cti_dialer_task_status@fs1", "t1"))
    wait_for(lambda: status()["agents_free"] == 10, 10, message="the status at the next heartbeat")
    assert status()["abandoned"] == len(abandoned)
    assert abs(status()["abandon_rate"] - len(abandoned) / len(live)) < 0.01
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
    assert 'cti_dialer_agents_free{task="t1"} 10.0' in text
    assert 'cti_dialer_calls_abandoned_total{task="t1"} %d.0' % len(abandoned) in text


def test_predictive_keeps_agents_busy_under_the_abandon_cap(r, sim, daemon, fault_report):
    # 20 agents, 30 % answer rate, 60 s talk, an hour: compressed 60 times.
    # Callers not with an agent within agent_wait hang up (after the message
    # the US rule requires at 2 s): they never take an agent later.
    agents(sim, 20, talk_ms=1000, patience_ms=50)
    answered = [Outcome.answer(ring_ms=ms, hold_ms=None) for ms in (100, 150, 200, 250, 300)]
    sim.default_outcome = OutcomeMix([(6, o) for o in answered] + [(70, Outcome.no_answer(ring_ms=400))], seed=11)
    basic_setup(r, lines=(("l1", "sofia/gateway/gw1/", 500),))
    push(r, "queue:t1", *[str(1000000 + i) for i in range(6000)])
    put_task(r, "t1", task_params(limit=400, pacing={"mode": "predictive", "queue": QUEUE, "agent_wait": 0.05,
                                                     "abandon_window": 30}))
    wait_for(lambda: len(results(r)) >= 20, 20, message="dialing started")
    start = sim.callcenter.stats(QUEUE)
    first = len(results(r))
    t0 = time.time()
    wait_for(lambda: time.time() - t0 >= 60.0, 65, interval=0.5, message="a compressed hour")
    end = sim.callcenter.stats(QUEUE)
    put_task(r, "t1", task_params(enable=False, limit=400,
                                  pacing={"mode": "predictive", "queue": QUEUE, "agent_wait": 0.05}))
    talk = end["talk_ms"] - start["talk_ms"]
    available = end["available_ms"] - start["available_ms"]
    occupancy = talk / available
    res = results(r)[first:]
    live = [x for x in res if x["answered"] == "1"]
    abandoned = [x for x in live if x["abandoned"] == "1"]
    rate = len(abandoned) / len(live)
    fault_report("predictive, 20 agents, 30%% answer, 60 s talk, 1 h at 60x: occupancy %.1f%%, "
                 "abandon %.2f%% (%d of %d live), %d calls"
                 % (occupancy * 100, rate * 100, len(abandoned), len(live), len(res)))
    # What the issue asks, over one hour. Measured 85.1-85.7 % and 1.5-2.1 %
    # here; 60 one-hour runs of bench/pacing_model.py: occupancy 83.3 % at
    # the lowest, abandons 2.4 % at the highest.
    assert rate < 0.03
    assert occupancy > 0.80


def test_machine_answers_redial_by_their_own_class(r, sim, daemon):
    sim.script_number("72001", Outcome.answer(hold_ms=50, variables={"amd_result": "MACHINE"}))
    sim.script_number("72002", Outcome.answer(hold_ms=50))
    basic_setup(r)
    push(r, "queue:t1", "72001", "72002")
    put_task(r, "t1", task_params(redial={"machine": {"count": 2, "interval": 0.2}}))
    wait_for(lambda: len(results(r)) >= 4, 20, message="4 results")
    wait_settled(r)
    by_number = collections.defaultdict(list)
    for x in results(r):
        by_number[x["number"]].append(x)
    assert [x["verdict"] for x in by_number["72001"]] == ["machine"] * 3      # first call and two redials
    assert [x["verdict"] for x in by_number["72002"]] == ["answered"]
    counters = {k.decode(): int(v) for k, v in r.hgetall("cti_dialer_counter@test:t1").items()}
    assert counters["machine"] == 3 and counters["answered"] == 1 and "failed" not in counters
