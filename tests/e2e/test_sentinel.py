"""Redis Sentinel: the daemon follows a failover to the promoted replica."""
import subprocess

import pytest
import redis

from cti_dialer.fsim import Outcome
from cti_dialer.redis_server import RedisServer, find_binary, free_port
from tests.conftest import wait_for
from tests.e2e.conftest import basic_setup, push, put_task, results, task_params

pytestmark = pytest.mark.e2e


@pytest.fixture
def sentinel_setup(tmp_path):
    for name in ("master", "replica"):
        (tmp_path / name).mkdir()
    master = RedisServer(workdir=str(tmp_path / "master")).start()
    replica = RedisServer(workdir=str(tmp_path / "replica"),
                          extra_args=["--replicaof", "127.0.0.1", str(master.port)]).start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text("port %d\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 %d 1\n"
                    "sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n"
                    % (port, master.port))
    sentinel = subprocess.Popen([find_binary(), str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    s = redis.Redis(port=port)
    wait_for(lambda: _quiet(lambda: s.sentinel_master("mymaster")["num-slaves"] >= 1), 15,
             message="sentinel sees the replica")
    yield master, replica, port
    sentinel.kill()
    sentinel.wait()
    for server in (master, replica):
        server.cleanup()


def _quiet(fn):
    try:
        return fn()
    except (redis.RedisError, KeyError):
        return False


def test_failover_to_the_promoted_replica(sentinel_setup, sim, daemon_factory, fault_report):
    master, replica, sentinel_port = sentinel_setup
    m = redis.Redis(port=master.port)
    sim.default_outcome = Outcome.answer(ring_ms=0, hold_ms=50)
    basic_setup(m)
    put_task(m, "t1", task_params(limit=5), notify=False)
    daemon_factory(extra={"redis": {"sentinels": "127.0.0.1:%d" % sentinel_port, "sentinel_service": "mymaster",
                                    "url": "redis://127.0.0.1:1/0", "socket_timeout": "1"}})
    push(m, "queue:t1", "70001", "70002")
    wait_for(lambda: len(results(m)) == 2, 10)
    m.wait(1, 2000)                         # the replica has everything so far
    master.stop(kill=True)
    r2 = redis.Redis(port=replica.port)
    wait_for(lambda: _quiet(lambda: r2.info("replication")["role"] == "master"), 30, message="promotion")
    push(r2, "queue:t1", "70003", "70004")
    res = wait_for(lambda: len(results(r2)) >= 4 and results(r2), 30, message="calls after failover")
    assert [x["number"] for x in res] == ["70001", "70002", "70003", "70004"]
    assert [o.number for o in sim.originates()] == ["70001", "70002", "70003", "70004"]
    fault_report("sentinel failover: 4 numbers, each originated once")
