"""ResultWriter.loop(now): results written in order; kept, in order, while Redis is away."""
from cti_dialer.writer import ResultWriter

from .conftest import NOW


def test_results_wait_out_an_outage_and_go_in_order(world):
    writer = ResultWriter(world.store)
    for i in range(3):
        world.r.hset(world.keys.inflight, "c%d" % i, "{}")
        writer.finish("c%d" % i, None, {"number": str(i)}, None)
    world.server.connected = False
    first = writer.loop(NOW)
    assert first > 0 and len(writer) == 3
    assert writer.loop(NOW) == first             # no retry storm: the back-off holds whatever wakes it
    assert writer.loop(NOW + first) == 2 * first
    world.server.connected = True
    assert writer.loop(NOW + 10) == 1.0
    assert len(writer) == 0
    assert [r["number"] for r in world.results()] == ["0", "1", "2"]
    assert world.r.hlen(world.keys.inflight) == 0


def test_a_requeue_goes_back_first_in_line_once(world):
    writer = ResultWriter(world.store)
    record = {"kind": "queue", "task": "t1", "queue": "q:t1", "back": "list", "raw": "1001", "line": "",
              "state": "claimed", "seen": None}
    world.r.rpush("q:t1", "2001")
    world.r.hset(world.keys.inflight, "c1", "{}")
    writer.requeue("c1", record)
    writer.requeue("c1", record)                 # a retry after a lost reply
    writer.loop(NOW)
    assert world.r.lrange("q:t1", 0, -1) == [b"2001", b"1001"]
    assert writer.pending_ids() == set()


def test_the_journal_keeps_what_redis_could_not_take_and_replays_it_once(world, tmp_path):
    writer = ResultWriter(world.store, str(tmp_path))
    world.r.hset(world.keys.inflight, "c1", "{}")
    world.r.hset(world.keys.inflight, "c2", "{}")
    writer.finish("c1", "l1", {"number": "1001", "cause": "USER_BUSY"}, None,
                  (world.keys.counters("t1"), {"results": 1}), (world.keys.retries("t1"), NOW + 60, b'{"raw":"1001"}'))
    writer.requeue("c2", {"kind": "queue", "task": "t1", "queue": "q:t1", "back": "list", "raw": "1002",
                          "line": "", "state": "claimed", "seen": None})
    world.server.connected = False
    writer.loop(NOW)
    assert writer.save_journal() == 2
    world.server.connected = True
    again = ResultWriter(world.store, str(tmp_path))      # the next start
    assert again.load_journal() == 2
    again.loop(NOW)
    assert [r["cause"] for r in world.results()] == ["USER_BUSY"]
    assert world.r.zcard(world.keys.retries("t1")) == 1 and world.r.lrange("q:t1", 0, -1) == [b"1002"]
    assert not (tmp_path / "pending-writes.jsonl").exists()
    third = ResultWriter(world.store, str(tmp_path))
    assert third.load_journal() == 0


def test_no_state_dir_means_no_journal(world):
    writer = ResultWriter(world.store)
    writer.finish("c1", None, {"number": "1"}, None)
    assert writer.save_journal() == 0 and writer.load_journal() == 0
