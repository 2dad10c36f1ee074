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


def test_sigterm_with_calls_up_exits_fast_and_follows_them_after_restart(r, sim, daemon_factory):
    sim.default_outcome = Outcome.answer(ring_ms=0, hold_ms=4000)
    basic_setup(r)
    put_task(r, "t1", task_params(limit=5), notify=False)
    push(r, "queue:t1", *[str(44000 + i) for i in range(5)])
    d = daemon_factory()
    wait_for(lambda: len(sim.active_channels()) == 5, 10)
    import time
    t0 = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - t0 < 3.0          # not waiting for the calls
    assert len(sim.active_channels()) == 5       # they go on on the switch
    assert r.hlen("cti_dialer_inflight@fs1") == 5
    d2 = daemon_factory()
    d2.wait_log("5 still up and followed")
    res = wait_for(lambda: len(results(r)) == 5 and results(r), 15)
    assert all(x["cause"] == "NORMAL_CLEARING" and x["answered"] == "1" for x in res)
    assert len(sim.originates()) == 5


def test_no_per_call_state_left_after_a_varied_run(r, sim, daemon, fault_report):
    basic_setup(r, lines=(("a", "sofia/gateway/gwa/", 10), ("b", "sofia/gateway/gwb/", 10)),
                groups=(("g1", ("a",)), ("g2", ("b",))))
    sim.script_gateway("gwa", Outcome.fail("GATEWAY_DOWN"))        # every call fails over
    numbers = [str(45000 + i) for i in range(300)]
    for n in numbers[::7]:
        sim.script_number(n, Outcome.busy())
    r.sadd("cti_dnc@test", numbers[3])
    put_task(r, "t1", task_params(limit=10, line_group=["g1", "g2"], redial={"busy": {"count": 1, "interval": 0}}))
    push(r, "queue:t1", *numbers, "bad number")
    wait_for(lambda: len(results(r)) >= 300 + 43 + 1, 60, message="every result")

    def idle():
        st = {k.decode(): v.decode() for k, v in r.hgetall("cti_dialer_status@fs1").items()}
        return st if st.get("tracked_claims") == "0" and st.get("tracked_uuids") == "0" else None
    st = wait_for(idle, 10, message="no tracked claims")
    fault_report("after 300 numbers (+failover, redials, DNC, a rejection): tracked_claims=%s tracked_uuids=%s "
                 "rss=%s kB" % (st["tracked_claims"], st["tracked_uuids"], st["rss_kb"]))
    assert r.hlen("cti_dialer_inflight@fs1") == 0
    assert r.zcard("cti_dialer_line_lease@test:a") == 0 and r.zcard("cti_dialer_line_lease@test:b") == 0
