"""Partitions and doubles: a host cut off from Redis while others go on, two daemons with one host name.

Each test counts, per number: rang (originates that reached a callee's
line), recorded (results), waiting (its queue or set) and stranded (an
in-flight record nobody settles once everything is quiet). Lost (none of
rang, recorded or waiting), rang twice and stranded must all be 0, and
every number gets exactly one result.
"""
import collections
import json
import time

import pytest

from cti_dialer.fsim import Outcome
from tests.conftest import wait_for
from tests.e2e.conftest import (DOMAIN, DaemonProc, basic_setup, publish, push, put_line, put_task, results,
                                task_params)
from tests.proxy import FaultProxy

pytestmark = pytest.mark.e2e
ZSET = "cti_schedule_dialer_number@%s" % DOMAIN
FAILOVER = {"takeover_after": "2", "failover_wait": "60"}


def inflight(r, hosts):
    return {host: {k.decode(): json.loads(v) for k, v in r.hgetall("cti_dialer_inflight@%s" % host).items()}
            for host in hosts}


def tally(r, sim, numbers, report, label, hosts, rang_on=None, waiting=()):
    """Count and assert: lost, rang twice and stranded are 0; one result each."""
    rings = collections.Counter(o.number for o in sim.originates()
                                if o.cause != "DESTINATION_OUT_OF_ORDER" and (rang_on is None or o.endpoint == rang_on))
    recorded = collections.Counter(x["number"] for x in results(r))
    stranded = [rec.get("raw") for records in inflight(r, hosts).values() for rec in records.values()]
    lost = [n for n in numbers if not rings[n] and not recorded[n] and n not in waiting]
    twice = [n for n in numbers if rings[n] > 1]
    report("%s: N=%d rang=%d lost=%d rang-twice=%d stranded=%d results=%d" % (
        label, len(numbers), sum(1 for n in numbers if rings[n]), len(lost), len(twice), len(stranded),
        sum(recorded[n] for n in numbers)))
    assert lost == [], "lost: %s" % lost
    assert twice == [], "rang twice: %s" % twice
    assert stranded == [], "stranded in flight: %s" % stranded
    assert all(recorded[n] == 1 for n in numbers if n not in waiting), dict(recorded)


def failover_setup(r, sim, numbers):
    """t1 dials on group g1 (gateway down) and fails over to g2, whose only line is disabled for now."""
    sim.default_outcome = Outcome.answer(ring_ms=20, hold_ms=100)
    sim.script_gateway("gwdown", Outcome.fail("GATEWAY_DOWN"))
    basic_setup(r, lines=(("down", "sofia/gateway/gwdown/", 10),), groups=(("g1", ("down",)), ("g2", ("up",))))
    put_line(r, "up", "sofia/gateway/gwup/", limit=10, enable=False)
    put_task(r, "t1", task_params(limit=len(numbers), line_group=["g1", "g2"]))


def wait_parked(r, host, count):
    def parked():
        records = inflight(r, [host])[host]
        return len(records) == count and all(rec["state"] == "parked" for rec in records.values())
    wait_for(parked, 20, message="%d numbers of %s parked, waiting to fail over" % (count, host))


def status(r, host):
    return {k.decode(): v.decode() for k, v in r.hgetall("cti_dialer_status@%s" % host).items()}


def wait_quiet(r, host, since):
    """The host wrote its status after ``since`` and follows no claim any more."""
    def quiet():
        st = status(r, host)
        return float(st.get("heartbeat") or 0) > since and st.get("tracked_claims") == "0"
    wait_for(quiet, 30, message="%s back and following nothing" % host)


def test_a_host_cut_off_while_numbers_wait_to_fail_over_never_sends_them_again(
        r, sim, redis_server, daemon_factory, fault_report):
    """Issue 12, item 1: fs2 takes fs1's parked numbers over and dials them; fs1 comes back and must not."""
    numbers = [str(81000 + i) for i in range(4)]
    failover_setup(r, sim, numbers)
    proxy = FaultProxy("127.0.0.1", redis_server.port)
    try:
        fs1 = daemon_factory(host="fs1", extra={"redis": {"url": "redis://127.0.0.1:%d/0" % proxy.port,
                                                          "socket_timeout": "1"}, "dialer": FAILOVER})
        push(r, "queue:t1", *numbers)
        wait_parked(r, "fs1", len(numbers))
        daemon_factory(host="fs2", extra={"dialer": FAILOVER})
        proxy.cut()
        fs1.wait_log("Redis unavailable")
        wait_for(lambda: not r.hlen("cti_dialer_inflight@fs1") and not r.llen("queue:t1"), 30,
                 message="fs2 took fs1's numbers over and claimed them again")
        put_line(r, "up", "sofia/gateway/gwup/", limit=10)
        wait_for(lambda: {x["number"] for x in results(r)} >= set(numbers), 30, message="fs2 dialed them")
        resumed = time.time()
        proxy.resume()                      # fs1 is back, its failovers still waiting
        wait_quiet(r, "fs1", resumed)
        time.sleep(1)
        tally(r, sim, numbers, fault_report, "fs1 cut off with 4 numbers waiting to fail over", ("fs1", "fs2"),
              rang_on="gwup")
        assert {x["host"] for x in results(r)} == {"fs2"}
    finally:
        proxy.close()


def second_instance(tmp_path, redis_server, sim, host="fs1", extra=None):
    """A daemon with the same host name as a running one, with its own config and log."""
    home = tmp_path / "second"
    home.mkdir(exist_ok=True)
    return DaemonProc(home, redis_server.url, sim.port, host=host, extra=extra)


def test_a_second_daemon_with_the_same_host_name_refuses_to_start(r, sim, redis_server, daemon_factory, tmp_path,
                                                                   fault_report):
    """Issue 12, item 2. Waits for the lead's wiring: claim_host at start, exit status 1."""
    basic_setup(r)
    sim.default_outcome = Outcome.answer(ring_ms=20, hold_ms=300)
    put_task(r, "t1", task_params(limit=5))
    daemon_factory(host="fs1")
    second = second_instance(tmp_path, redis_server, sim)
    second.start(wait_ready=False)
    try:
        numbers = [str(82000 + i) for i in range(30)]
        push(r, "queue:t1", *numbers)
        wait_for(lambda: {x["number"] for x in results(r)} >= set(numbers), 30, message="every result")
        tally(r, sim, numbers, fault_report, "a second fs1 started beside a running one", ("fs1",))
        holder = r.get("cti_dialer_instance@fs1")
        assert holder, "the running fs1 holds its name"
        wait_for(lambda: second.proc.poll() is not None, 30, message="the second fs1 to exit")
        assert second.proc.returncode != 0, "a second live instance must exit with an error"
        assert holder.decode() in second.log(), "its log must name the instance that holds the name"
        assert "ready: connected to Redis" not in second.log()
        assert r.get("cti_dialer_instance@fs1") == holder
    finally:
        if second.proc.poll() is None:
            second.kill9()


def test_a_daemon_cut_off_and_replaced_under_its_host_name_never_dials_again(
        r, sim, redis_server, daemon_factory, tmp_path, fault_report):
    """Issue 12, items 1 and 2: a new fs1 starts while the old one is cut off (its name expired), adopts its
    records and dials them; the old one comes back, owns nothing, dials nothing and stops. The exit waits for
    the lead's wiring (heartbeat False: stop, exit status 1)."""
    numbers = [str(83000 + i) for i in range(4)]
    failover_setup(r, sim, numbers)
    proxy = FaultProxy("127.0.0.1", redis_server.port)
    second = None
    try:
        old = daemon_factory(host="fs1", extra={"redis": {"url": "redis://127.0.0.1:%d/0" % proxy.port,
                                                          "socket_timeout": "1"}, "dialer": FAILOVER})
        push(r, "queue:t1", *numbers)
        wait_parked(r, "fs1", len(numbers))
        proxy.cut()
        old.wait_log("Redis unavailable")
        wait_for(lambda: not r.exists("cti_dialer_instance@fs1"), 15, message="the old fs1's name expired")
        second = second_instance(tmp_path, redis_server, sim, extra={"dialer": FAILOVER}).start()
        put_line(r, "up", "sofia/gateway/gwup/", limit=10)
        wait_for(lambda: {x["number"] for x in results(r)} >= set(numbers), 30, message="the new fs1 dialed them")
        resumed = time.time()
        proxy.resume()
        wait_for(lambda: old.proc.poll() is not None or status(r, "fs1").get("tracked_claims") == "0"
                 and float(status(r, "fs1").get("heartbeat") or 0) > resumed, 30,
                 message="the old fs1 stopped or following nothing")
        time.sleep(2)
        tally(r, sim, numbers, fault_report, "fs1 replaced while cut off, then back", ("fs1",), rang_on="gwup")
        wait_for(lambda: old.proc.poll() is not None, 15, message="the old fs1 to stop")
        assert old.proc.returncode != 0, "an instance that lost its host name must exit with an error"
        assert second.proc.poll() is None
    finally:
        proxy.close()
        if second is not None and second.proc.poll() is None:
            second.kill9()


def test_inf_scored_members_strand_nothing_of_their_batch(r, sim, daemon, fault_report):
    """Issue 12, item 3 on a real Redis (whose cjson refuses -inf and +inf)."""
    basic_setup(r)
    r.hset("cti_schedule_dialer_config@%s" % DOMAIN, "c1",
           json.dumps({"params": {"line_group": ["g1"], "destination_extension": "8888"}}))
    publish(r, "cti_schedule_dialer_config", "c1")
    daemon.wait_log("table=cti_schedule_dialer_config key=c1 applied")
    good = [str(84000 + i) for i in range(6)]

    def member(number):
        return json.dumps({"params": {"number": number, "expires": 0, "config": "c1"}})
    now = time.time()
    bad = {member("84100"): float("-inf"), member("84101"): float("inf")}
    r.zadd(ZSET, {**{member(n): now - 1 - i * 0.01 for i, n in enumerate(good)}, **bad})
    wait_for(lambda: len(results(r)) >= len(good) + len(bad), 15, message="a result for each member")
    time.sleep(0.5)
    tally(r, sim, good, fault_report, "6 due members with a -inf and a +inf one", ("fs1",))
    causes = {x["number"]: x["cause"] for x in results(r)}
    assert [causes[m] for m in bad] == ["REJECTED_INPUT", "REJECTED_INPUT"]
    assert r.zcard(ZSET) == 0
