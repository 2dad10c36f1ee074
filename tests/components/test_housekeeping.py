"""Housekeeping.loop(now): heartbeat, status records, takeover of a gone host's numbers."""
import json

import pytest

from cti_dialer import messages
from cti_dialer.housekeeping import HEARTBEAT_INTERVAL, Housekeeping
from cti_dialer.keys import Keys

from .conftest import NOW


@pytest.fixture
def housekeeping(world):
    world.line("l1", 2)
    world.group("g1", "l1")
    world.task("t1", limit=4)
    world.r.hset(world.keys.task_template, "broken", b"{")
    world.r.lpush("q:t1", "1001", "1002")
    world.catalog.reload_all(NOW)
    h = Housekeeping(config=world.config, store=world.store, catalog=world.catalog, tracker=world.tracker,
                     writer=world.writer, health=world.health, esl=world.switch, tz=world.config.dialer_timezone)
    h.initialize()
    return h


def test_heartbeat_and_status_records_in_their_declared_shapes(world, housekeeping):
    assert housekeeping.loop(NOW) == HEARTBEAT_INTERVAL
    assert world.r.ttl(world.keys.alive()) >= 3 * HEARTBEAT_INTERVAL
    assert world.r.sismember(world.keys.hosts, "fs1")
    host = messages.decode_host_status(world.r.hgetall(world.keys.status))
    assert (host.host, host.state, host.esl, host.active_calls, host.heartbeat) == \
        ("fs1", "running", "connected", 0, NOW)
    t1 = messages.decode_task_status(world.r.hget(world.keys.task_status, "t1"))
    assert (t1.state, t1.queued, t1.limit, t1.queue) == ("running", 2, 4, "q:t1")
    broken = messages.decode_task_status(world.r.hget(world.keys.task_status, "broken"))
    assert broken.state == "error" and broken.last_error
    assert housekeeping.queue_lengths == {"t1": 2}


def test_a_deleted_task_leaves_the_status_hash(world, housekeeping):
    housekeeping.loop(NOW)
    world.r.hdel(world.keys.task_template, "broken")
    world.catalog.reload_all(NOW)
    housekeeping.loop(NOW + HEARTBEAT_INTERVAL)
    assert world.r.hkeys(world.keys.task_status) == [b"t1"]


def test_a_gone_hosts_numbers_are_taken_over_and_settled(world, housekeeping):
    other = Keys("fs2", "test")
    world.r.sadd(world.keys.hosts, "fs2")
    world.r.hset(other.inflight, "c1", json.dumps({
        "kind": "queue", "task": "t1", "queue": "q:t1", "back": "list", "raw": "3001", "line": "l1", "group": 0,
        "state": "claimed", "claimed_at": NOW - 500}))
    housekeeping.take_over_gone_hosts()
    assert world.r.hlen(other.inflight) == 0 and world.r.hlen(world.keys.inflight) == 0
    assert world.r.lrange("q:t1", 0, -1)[-1] == b"3001"     # never dialed: first in line again


def test_a_live_host_keeps_its_numbers(world, housekeeping):
    other = Keys("fs2", "test")
    world.r.sadd(world.keys.hosts, "fs2")
    world.r.set(other.alive(), 1, ex=60)
    world.r.hset(other.inflight, "c1", json.dumps({"kind": "queue", "task": "t1", "queue": "q:t1", "raw": "3001",
                                                   "state": "claimed", "claimed_at": NOW - 500}))
    housekeeping.take_over_gone_hosts()
    assert world.r.hlen(other.inflight) == 1


def test_fields_an_earlier_run_left_in_the_status_are_removed(world, housekeeping):
    world.r.hset(world.keys.task_status, "phantom", b'{"state": "error"}')    # from before a restart
    housekeeping.loop(NOW)
    assert sorted(world.r.hkeys(world.keys.task_status)) == [b"broken", b"t1"]


def test_after_redis_trouble_a_claim_whose_reply_was_lost_goes_back_within_seconds(world, housekeeping):
    world.r.hset(world.keys.inflight, "lost-reply", json.dumps({
        "owner": world.store.instance_id, "kind": "queue", "task": "t1", "queue": "q:t1", "back": "list",
        "raw": "5001", "line": "", "group": 0, "state": "claimed", "claimed_at": NOW - 10}))
    housekeeping.loop(NOW)                            # no trouble seen: the two-minute sweep's business
    assert world.r.hexists(world.keys.inflight, "lost-reply")
    world.health.redis_trouble_at = NOW               # a claim call failed just now
    housekeeping.loop(NOW + HEARTBEAT_INTERVAL)
    assert not world.r.hexists(world.keys.inflight, "lost-reply")
    assert world.r.lrange("q:t1", -1, -1) == [b"5001"]     # first in line
