"""Fault tests that count: N uniquely numbered calls, a fault, and the switch's log.

For every number: originated (seen by the switch, refusals for capacity not
counted), recorded (results), waiting (still in its queue or set). A number is
*lost* when it is none of these and *duplicated* when the switch saw it twice;
both must be 0. A number recorded UNKNOWN that the switch never saw is the
documented at-most-once window (a crash or a dropped socket between "mark
sent" and FreeSWITCH reading the originate); it is reported, never redialed.
"""
import collections
import json
import random
import time

import pytest

from cti_dialer.fsim import Outcome
from cti_dialer.redis_server import RedisServer
from tests.conftest import wait_for
from tests.e2e.conftest import DOMAIN, basic_setup, push, put_task, results, task_params
from tests.proxy import FaultProxy

pytestmark = pytest.mark.e2e
ZSET = "cti_schedule_dialer_number@%s" % DOMAIN


def numbers_from(base, n):
    return [str(base + i) for i in range(n)]


def queue_run(r, sim, first, count, hold_ms):
    """Numbers first..first+count-1 queued on task t1 (limit 10, one line of 30)."""
    sim.default_outcome = Outcome.answer(ring_ms=20, hold_ms=hold_ms)
    basic_setup(r, lines=(("l1", "sofia/gateway/gw1/", 30),))
    numbers = numbers_from(first, count)
    put_task(r, "t1", task_params(limit=10), notify=False)
    push(r, "queue:t1", *numbers)
    return numbers


def tally(r, sim, numbers, report, extra=""):
    originated = collections.Counter(o.number for o in sim.originates() if o.cause != "DESTINATION_OUT_OF_ORDER")
    recorded = collections.Counter(x["number"] for x in results(r))
    lost = [n for n in numbers if not originated[n] and not recorded[n]]
    duplicated = [n for n in numbers if originated[n] > 1]
    unsent_unknown = [n for n in numbers if not originated[n] and recorded[n]]
    report("N=%d originated=%d lost=%d duplicated=%d unknown-never-rang=%d %s" % (
        len(numbers), sum(1 for n in numbers if originated[n]), len(lost), len(duplicated),
        len(unsent_unknown), extra))
    assert lost == [], "lost: %s" % lost[:10]
    assert duplicated == [], "dialed twice: %s" % duplicated[:10]
    assert all(recorded[n] == 1 for n in numbers), "a number without exactly one result"
    return unsent_unknown


def all_recorded(r, numbers, timeout=60):
    wanted = set(numbers)
    return wait_for(lambda: wanted <= {x["number"] for x in results(r)}, timeout,
                    message="a result for each of %d numbers" % len(numbers))


def test_kill9_at_random_moments(r, sim, daemon_factory, fault_report):
    numbers = queue_run(r, sim, 60000, 150, hold_ms=150)
    rng = random.Random(5)
    d = daemon_factory()
    kills = 0
    for _ in range(3):
        time.sleep(rng.uniform(0.3, 1.0))
        d.kill9()
        kills += 1
        d = daemon_factory()
    all_recorded(r, numbers)
    tally(r, sim, numbers, fault_report, "kills=%d" % kills)
    assert r.hlen("cti_dialer_inflight@fs1") == 0 and r.llen("queue:t1") == 0


def test_redis_restarted_mid_run_with_aof(r, sim, daemon_factory, fault_report, tmp_path):
    server = RedisServer(appendonly=True, workdir=str(tmp_path)).start()
    try:
        import redis as redis_lib
        rr = redis_lib.Redis(port=server.port)
        numbers = queue_run(rr, sim, 61000, 150, hold_ms=200)
        daemon_factory(extra={"redis": {"url": server.url, "socket_timeout": "1"}})
        wait_for(lambda: len(sim.originates()) >= 30, 20)
        server.stop(kill=True)              # SIGKILL: only the AOF (fsync always) survives
        time.sleep(1.5)                     # calls end while Redis is away
        server.start()
        all_recorded(rr, numbers)
        tally(rr, sim, numbers, fault_report, "redis killed and restarted once")
        assert rr.hlen("cti_dialer_inflight@fs1") == 0
    finally:
        server.cleanup()


def test_redis_unreachable_longer_than_every_timeout(r, redis_server, sim, daemon_factory, fault_report):
    proxy = FaultProxy("127.0.0.1", redis_server.port)
    try:
        numbers = queue_run(r, sim, 62000, 120, hold_ms=200)
        d = daemon_factory(extra={"redis": {"url": "redis://127.0.0.1:%d/0" % proxy.port, "socket_timeout": "1"}})
        wait_for(lambda: len(sim.originates()) >= 20, 20)
        proxy.cut()
        d.wait_log("Redis unavailable")
        time.sleep(3)                       # > socket_timeout, > every backoff step used
        proxy.resume()
        all_recorded(r, numbers)
        tally(r, sim, numbers, fault_report, "redis cut for 3 s")
        assert r.hlen("cti_dialer_inflight@fs1") == 0
    finally:
        proxy.close()


@pytest.mark.parametrize("fault", ["drop", "silent"])
def test_switch_faults(r, sim, daemon_factory, fault_report, fault):
    numbers = queue_run(r, sim, 63000 if fault == "drop" else 64000, 120, hold_ms=150)
    d = daemon_factory()
    wait_for(lambda: len(sim.originates()) >= 30, 20)
    if fault == "drop":
        sim.drop_connections()
        d.wait_log("ESL connection to 127.0.0.1")
    else:
        sim.silent = True
        d.wait_log("dropping ESL connection: no reply within", timeout=15)
        sim.silent = False
    all_recorded(r, numbers)
    tally(r, sim, numbers, fault_report, "switch fault: %s" % fault)
    assert r.hlen("cti_dialer_inflight@fs1") == 0


@pytest.mark.parametrize("daemons", [2, 3])
def test_daemons_share_queue_and_schedule_one_killed(r, sim, daemon_factory, fault_report, daemons):
    sim.default_outcome = Outcome.answer(ring_ms=20, hold_ms=300)
    # Lines for every number: with fewer, the seed's no-line rule would push
    # scheduled members 60 s away (tested in test_schedule_dialer).
    basic_setup(r, lines=(("l1", "sofia/gateway/gw1/", 300),))
    r.hset("cti_schedule_dialer_config@%s" % DOMAIN, "c1",
           json.dumps({"params": {"line_group": ["g1"], "destination_extension": "8888"}}))
    queued = numbers_from(65000 + daemons * 1000, 120)
    scheduled = numbers_from(66000 + daemons * 1000, 120)
    put_task(r, "t1", task_params(limit=8), notify=False)
    hosts = ["fs%d" % (i + 1) for i in range(daemons)]
    procs = [daemon_factory(host=h, extra={"dialer": {"takeover_after": "2"}}) for h in hosts]
    push(r, "queue:t1", *queued)
    start = time.time() + 0.3
    r.zadd(ZSET, {json.dumps({"params": {"number": n, "expires": int(start + 3600), "config": "c1"}}):
                  start + i * 0.01 for i, n in enumerate(scheduled)})
    wait_for(lambda: len(sim.originates()) >= 60, 20)
    procs[0].kill9()                            # fs1 dies with calls up and numbers claimed
    all_recorded(r, queued + scheduled, timeout=90)
    tally(r, sim, queued + scheduled, fault_report, "%d daemons, fs1 killed" % daemons)
    survivors = [x["host"] for x in results(r)]
    assert set(survivors) >= set(hosts[1:])
    wait_for(lambda: r.hlen("cti_dialer_inflight@fs1") == 0, 15, message="fs1's records taken over")
    assert sim.max_concurrent <= 300
