"""Operator mistakes and Redis trouble that used to use up, lose or mis-record numbers.

Each test counts: lost (neither dialed, recorded nor waiting), rang twice,
and the specific way the number used to be wasted.
"""
import collections

import pytest

from cti_dialer.fsim import Outcome
from tests.conftest import wait_for
from tests.e2e.conftest import DOMAIN, basic_setup, push, put_task, rejected, results, task_params
from tests.proxy import FaultProxy

pytestmark = pytest.mark.e2e


def rang(sim):
    return collections.Counter(o.number for o in sim.originates() if o.cause != "DESTINATION_OUT_OF_ORDER")


def host_status(r):
    return {k.decode(): v.decode() for k, v in r.hgetall("cti_dialer_status@fs1").items()}


def task_status(r, name):
    import json
    raw = r.hget("cti_dialer_task_status@fs1", name)
    return json.loads(raw) if raw else {}


def test_a_switch_refusing_every_originate_uses_up_no_number(r, sim, daemon_factory, fault_report):
    sim.denied_commands = frozenset({"originate"})        # an event-socket ACL mistake
    d = daemon_factory(extra={"dialer": {"throttle_backoff": "0.2", "throttle_backoff_max": "0.5"}})
    basic_setup(r)
    put_task(r, "t1", task_params(limit=10))
    numbers = [str(71000 + i) for i in range(30)]
    push(r, "queue:t1", *numbers)
    d.wait_log("FreeSWITCH refuses originates (-ERR permission denied)")
    wait_for(lambda: host_status(r).get("esl", "").startswith("refusing originates"), 10,
             message="the host's error state in status")
    assert results(r) == []                               # nothing used up meanwhile
    sim.denied_commands = frozenset()                     # the operator fixes the ACL
    wait_for(lambda: len(results(r)) >= len(numbers), 30, message="every number dialed")
    counts = rang(sim)
    lost = [n for n in numbers if not counts[n]]
    twice = [n for n, c in counts.items() if c > 1]
    fault_report("switch refuses originates: N=%d lost=%d rang-twice=%d used-up=%d" % (
        len(numbers), len(lost), len(twice), sum(1 for x in results(r) if x["cause"] != "NORMAL_CLEARING")))
    assert not lost and not twice
    assert all(x["cause"] == "NORMAL_CLEARING" for x in results(r))
    wait_for(lambda: host_status(r).get("esl") == "connected", 10, message="the error state cleared")


def test_failover_waits_for_redis_instead_of_giving_up(r, sim, redis_server, daemon_factory, fault_report):
    proxy = FaultProxy("127.0.0.1", redis_server.port)
    try:
        basic_setup(r, lines=(("a", "sofia/gateway/gwa/", 20), ("b", "sofia/gateway/gwb/", 100)),
                    groups=(("g1", ("a",)), ("g2", ("b",))))
        d = daemon_factory(extra={"redis": {"url": "redis://127.0.0.1:%d/0" % proxy.port, "socket_timeout": "1"},
                                  "dialer": {"failover_wait": "1"}})
        put_task(r, "t1", task_params(limit=20, line_group=["g1", "g2"]))
        sim.script_gateway("gwa", Outcome.fail("GATEWAY_DOWN", ring_ms=300))
        numbers = [str(72000 + i) for i in range(20)]
        push(r, "queue:t1", *numbers)
        wait_for(lambda: sum(1 for o in sim.originates() if o.endpoint == "gwa") >= 20, 10,
                 message="every number tried on group 1")
        proxy.cut()                                       # Redis away for 3 s > failover_wait
        wait_for(lambda: d.log().count("failover of") >= 1, 10, message="failovers waiting for Redis")
        import time
        cut_until = time.monotonic() + 3
        wait_for(lambda: time.monotonic() >= cut_until, 5, message="3 s of outage")
        proxy.resume()
        wait_for(lambda: len(results(r)) >= len(numbers), 30, message="every result")
        causes = collections.Counter(x["cause"] for x in results(r))
        fault_report("Redis away 3 s during failover (failover_wait 1 s): N=%d causes=%s" % (len(numbers), dict(causes)))
        assert causes == {"NORMAL_CLEARING": len(numbers)}
        assert all(rang(sim)[n] == 2 for n in numbers)   # once per group, never more
    finally:
        proxy.close()


def test_outcomes_known_at_a_stop_with_redis_away_survive_in_the_journal(r, sim, redis_server, daemon_factory,
                                                                          tmp_path, fault_report):
    proxy = FaultProxy("127.0.0.1", redis_server.port)
    state = tmp_path / "state"
    extra = {"redis": {"url": "redis://127.0.0.1:%d/0" % proxy.port, "socket_timeout": "1"},
             "dialer": {"state_dir": str(state), "drain_timeout": "1"}}
    try:
        basic_setup(r)
        sim.default_outcome = Outcome.busy(ring_ms=1500)
        put_task(r, "t1", task_params(limit=10, redial={"busy": {"count": 1, "interval": 3600}}))
        numbers = [str(73000 + i) for i in range(8)]
        push(r, "queue:t1", *numbers)
        d = daemon_factory(extra=extra)
        wait_for(lambda: len(sim.originates()) == len(numbers), 10, message="every number ringing")
        proxy.cut()                                       # the busy outcomes arrive while Redis is away
        wait_for(lambda: d.log().count("call ") >= len(numbers), 10, message="every outcome known")
        assert d.stop() == 0
        assert (state / "pending-writes.jsonl").exists()
        proxy.resume()
        daemon_factory(extra=extra)
        wait_for(lambda: len(results(r)) >= len(numbers), 20, message="every result")
        causes = collections.Counter(x["cause"] for x in results(r))
        redials = r.zcard("cti_dialer_retry@%s:t1" % DOMAIN)
        fault_report("stop with Redis away, 8 busy outcomes known: causes=%s redials=%d journal-left=%s" % (
            dict(causes), redials, (state / "pending-writes.jsonl").exists()))
        assert causes == {"USER_BUSY": len(numbers)}      # never UNKNOWN
        assert redials == len(numbers)                    # each busy keeps its redial
        wait_for(lambda: not (state / "pending-writes.jsonl").exists(), 10, message="the journal consumed")
        assert all(rang(sim)[n] == 1 for n in numbers)
    finally:
        proxy.close()


def test_a_queue_key_of_the_wrong_type_hurts_only_its_task(r, sim, daemon, fault_report):
    import time
    basic_setup(r)
    put_task(r, "bad", task_params(number_queue="queue:bad"))
    put_task(r, "good", task_params(number_queue="queue:good"))
    wait_for(lambda: task_status(r, "bad").get("state") == "running", 10, message="both tasks idle")
    r.hset("queue:bad", "oops", "a hash where a list should be")     # while its watcher waits on it
    wait_for(lambda: task_status(r, "bad").get("state") == "error", 10, message="the broken task in error")
    assert "queue:bad" in task_status(r, "bad")["reason"]
    assert any(x["name"] == "bad" and x["kind"] == "task" for x in rejected(r))
    latencies = []
    for i in range(5):                    # the healthy task still picks numbers up at once
        pushed = time.monotonic()
        r.lpush("queue:good", str(74000 + i))
        wait_for(lambda: len(sim.originates()) > i, 5, message="number %d dialed" % i)
        latencies.append(time.monotonic() - pushed)
    wait_for(lambda: len(results(r)) >= 5, 10, message="the good task's results")
    assert rang(sim) == {str(74000 + i): 1 for i in range(5)}
    wait_for(lambda: task_status(r, "good").get("state") == "running", 10, message="status still written")
    fault_report("queue of the wrong type: good task pickup max %.0f ms; bad task state=%s" % (
        max(latencies) * 1000, task_status(r, "bad").get("state")))
    assert max(latencies) < 1.0


def test_kill9_while_numbers_wait_to_fail_over_records_none_unknown(r, sim, daemon_factory, fault_report):
    import random
    import time
    basic_setup(r, lines=(("a", "sofia/gateway/gwa/", 50), ("b", "sofia/gateway/gwb/", 3)),
                groups=(("g1", ("a",)), ("g2", ("b",))))
    sim.script_gateway("gwa", Outcome.fail("GATEWAY_DOWN"))            # every number fails over...
    sim.script_gateway("gwb", Outcome.answer(ring_ms=0, hold_ms=600))  # ...to a group that is mostly full
    put_task(r, "t1", task_params(limit=20, line_group=["g1", "g2"]))
    numbers = [str(75000 + i) for i in range(30)]
    push(r, "queue:t1", *numbers)
    rng = random.Random(12)
    d = daemon_factory()
    for _ in range(3):
        wait_for(lambda: len(sim.originates()) > 0, 10, message="dialing")
        pause_until = time.monotonic() + rng.uniform(0.3, 1.2)
        wait_for(lambda: time.monotonic() >= pause_until, 5, message="a moment of dialing")
        d.kill9()
        d = daemon_factory()
    wait_for(lambda: {x["number"] for x in results(r)} >= set(numbers), 90, message="a result for every number")
    res = results(r)
    on_b = collections.Counter(o.number for o in sim.originates() if o.endpoint == "gwb")
    unknown = [x["number"] for x in res if x["cause"] == "UNKNOWN"]
    unknown_never_rang = [n for n in unknown if not on_b[n]]
    twice = [n for n, c in on_b.items() if c > 1]
    lost = [n for n in numbers if n not in {x["number"] for x in res}]
    fault_report("kill -9 x3 with numbers waiting to fail over: N=%d lost=%d rang-twice=%d unknown=%d "
                 "unknown-never-rang=%d" % (len(numbers), len(lost), len(twice), len(unknown), len(unknown_never_rang)))
    assert not lost and not twice and not unknown_never_rang
