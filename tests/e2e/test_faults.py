"""Faults between the daemon and its peers: a silent switch, a Redis that goes away."""
import pytest

from cti_dialer.fsim import Outcome
from tests.conftest import wait_for
from tests.e2e.conftest import basic_setup, push, put_task, rejected, results, task_params
from tests.proxy import FaultProxy

pytestmark = pytest.mark.e2e


def test_silent_switch_bounded_waits_then_recovery(r, sim, daemon):
    sim.default_outcome = Outcome.answer(ring_ms=0, hold_ms=100)
    basic_setup(r)
    put_task(r, "t1", task_params(limit=3))
    push(r, "queue:t1", "40001")
    wait_for(lambda: len(results(r)) == 1, 10)
    sim.silent = True
    push(r, "queue:t1", "40002", "40003")
    # The bgapi replies never come: the daemon gives up after command_timeout
    # (3 s here), drops the connection and tries again.
    daemon.wait_log("dropping ESL connection: no reply within", timeout=15)
    sim.silent = False
    res = wait_for(lambda: len(results(r)) >= 3 and results(r), 30, message="3 results")
    numbers = sorted(x["number"] for x in res)
    assert numbers == ["40001", "40002", "40003"]
    # each number rang at most once: what the switch saw while silent may
    # have been carried out, and it is never sent again
    dialed = [o.number for o in sim.originates()]
    assert sorted(set(dialed)) == sorted(dialed)
    assert r.hlen("cti_dialer_inflight@fs1") == 0


def test_redis_cut_then_reread_without_any_notification(r, redis_server, sim, daemon_factory):
    proxy = FaultProxy("127.0.0.1", redis_server.port)
    try:
        d = daemon_factory(extra={"redis": {"url": "redis://127.0.0.1:%d/0" % proxy.port},
                                  "dialer": {"reload_interval": "3600"}})
        basic_setup(r)
        put_task(r, "t1", task_params())
        push(r, "queue:t1", "41001")
        wait_for(lambda: len(results(r)) == 1, 10)
        proxy.cut()
        d.wait_log("Redis unavailable")
        # Written while the daemon cannot hear: no PUBLISH reaches it.
        put_task(r, "t2", task_params(number_queue="queue:t2"), notify=False)
        push(r, "queue:t2", "41002")
        proxy.resume()
        res = wait_for(lambda: len(results(r)) >= 2 and results(r), 20, message="the new task's call")
        assert [x["number"] for x in res] == ["41001", "41002"]
        assert [o.number for o in sim.originates()] == ["41001", "41002"]
    finally:
        proxy.close()


def test_a_task_with_an_absurd_date_does_not_stop_the_others(r, sim, daemon_factory):
    basic_setup(r)
    put_task(r, "a_bad", task_params(number_queue="queue:bad", start_time="0001-1-1 00:00"), notify=False)
    put_task(r, "t1", task_params(), notify=False)
    push(r, "queue:t1", "42001")
    push(r, "queue:bad", "42002")
    daemon_factory(extra={"dialer": {"timezone": "Asia/Shanghai"}})
    wait_for(lambda: len(results(r)) == 1, 10)
    assert [o.number for o in sim.originates()] == ["42001"]
    rej = wait_for(lambda: [x for x in rejected(r) if x["name"] == "a_bad"], 5)
    assert "out of range" in rej[0]["reason"]


def _throttle_then(r, sim, daemon, **kw):
    basic_setup(r)
    sim.script_number("43001", Outcome.fail("DESTINATION_OUT_OF_ORDER", channel=False))
    put_task(r, "t1", task_params(limit=1))
    push(r, "queue:t1", "43001")
    daemon.wait_log("pausing", timeout=10)
    sim.script_number("43001", Outcome.answer(ring_ms=0, hold_ms=0))


def test_throttled_number_survives_the_switch_going_away(r, sim, daemon_factory):
    d = daemon_factory(extra={"dialer": {"throttle_backoff": "2", "throttle_backoff_max": "2"}})
    _throttle_then(r, sim, d)
    sim.stop_thread()                   # the switch is gone when the pause ends
    d.wait_log("ESL connection to 127.0.0.1")
    sim.start_in_thread()
    res = wait_for(lambda: results(r), 20, message="the result")
    assert res[0]["number"] == "43001" and res[0]["cause"] == "NORMAL_CLEARING"
    rung = [o.number for o in sim.originates() if o.cause != "DESTINATION_OUT_OF_ORDER"]
    assert rung == ["43001"]


def test_sigterm_during_a_throttle_pause_keeps_the_number(r, sim, daemon_factory):
    d = daemon_factory(extra={"dialer": {"throttle_backoff": "30", "throttle_backoff_max": "30"}})
    _throttle_then(r, sim, d)
    assert d.stop() == 0                # well before the 30 s pause ends
    assert r.llen("queue:t1") == 1 and r.hlen("cti_dialer_inflight@fs1") == 0
    daemon_factory()
    res = wait_for(lambda: results(r), 10, message="the result")
    assert res[0]["cause"] == "NORMAL_CLEARING"
