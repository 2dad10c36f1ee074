"""Store's domain operations: one contract suite, run on fakeredis and on a real redis-server (conftest)."""
import time

import orjson
import pytest

from cti_dialer.keys import Keys
from cti_dialer.store import Candidates
from tests.store.conftest import KEYS, ids


def test_claim_takes_oldest_first_and_records_inflight(store):
    for n in ("1", "2", "3"):
        store.r.lpush("q", n)
    status, items, _ = store.claim_numbers("q", "t", Candidates([[("l1", 10)]]), ids(2), 100.0, 60)
    assert status == "ok"
    assert [raw for _, raw, _, _, _ in items] == [b"1", b"2"]
    assert [line for _, _, line, _, _ in items] == ["l1", "l1"]
    inflight = store.inflight()
    assert set(inflight) == {"c0", "c1"}
    assert inflight["c0"]["raw"] == "1" and inflight["c0"]["state"] == "claimed"
    assert inflight["c0"]["task"] == "t" and inflight["c0"]["queue"] == "q"
    assert store.r.zscore(KEYS.line_lease("l1"), "c0") == 160.0
    assert store.r.lrange("q", 0, -1) == [b"3"]


def test_claim_never_exceeds_line_limit(store):
    for n in range(10):
        store.r.lpush("q", str(n))
    status, items, _ = store.claim_numbers("q", "t", Candidates([[("l1", 3)]]), ids(10), 100.0, 60)
    assert len(items) == 3 and status == "ok"
    status, items, _ = store.claim_numbers("q", "t", Candidates([[("l1", 3)]]), ids(5, 10), 101.0, 60)
    assert status == "no_line" and items == []
    assert store.r.llen("q") == 7


def test_expired_leases_free_their_slot(store):
    store.r.lpush("q", "1", "2")
    store.claim_numbers("q", "t", Candidates([[("l1", 1)]]), ids(1), 100.0, 60)
    assert store.claim_numbers("q", "t", Candidates([[("l1", 1)]]), ids(1, 1), 159.0, 60)[0] == "no_line"
    status, items, _ = store.claim_numbers("q", "t", Candidates([[("l1", 1)]]), ids(1, 2), 161.0, 60)
    assert status == "ok" and len(items) == 1


def test_spread_over_a_group_and_next_group_when_full(store):
    for n in range(6):
        store.r.lpush("q", str(n))
    cands = Candidates([[("a", 2), ("b", 2)], [("c", 5)]])
    status, items, _ = store.claim_numbers("q", "t", cands, ids(6), 100.0, 60)
    lines = [line for _, _, line, _, _ in items]
    assert sorted(lines[:4]) == ["a", "a", "b", "b"]
    assert lines[0] != lines[1]                      # spread, not fill-first
    assert lines[4:] == ["c", "c"]
    assert [g for _, _, _, g, _ in items] == [0, 0, 0, 0, 1, 1]


def test_line_in_two_groups_counts_once(store):
    for n in range(5):
        store.r.lpush("q", str(n))
    status, items, _ = store.claim_numbers("q", "t", Candidates([[("a", 2)], [("a", 2)]]), ids(5), 100.0, 60)
    assert len(items) == 2


def test_empty_queue(store):
    assert store.claim_numbers("q", "t", Candidates([[("a", 2)]]), ids(2), 100.0, 60)[:2] == ("empty", [])


def test_reserve_line_for_failover(store):
    assert store.reserve_line("x", Candidates([[("a", 1)], [("b", 1)]]), 100.0, 60)[1:3] == ("a", 0)
    assert store.reserve_line("y", Candidates([[("a", 1)], [("b", 1)]]), 100.0, 60)[1:3] == ("b", 1)
    assert store.reserve_line("z", Candidates([[("a", 1)], [("b", 1)]]), 100.0, 60).status == "no_line"


def test_requeue_puts_number_next_in_line(store):
    store.r.lpush("q", "1", "2")
    _, items, _ = store.claim_numbers("q", "t", Candidates([[("a", 5)]]), ids(1), 100.0, 60)
    rec = store.inflight()["c0"]
    store.requeue("c0", rec)
    assert store.inflight() == {}
    assert store.r.zcard(KEYS.line_lease("a")) == 0
    _, items, _ = store.claim_numbers("q", "t", Candidates([[("a", 5)]]), ids(1, 1), 100.0, 60)
    assert items[0][1] == b"1"


def test_finish_is_one_transaction(store):
    store.r.lpush("q", "1", "bad number")
    _, items, _ = store.claim_numbers("q", "t", Candidates([[("a", 5)]]), ids(2), 100.0, 60)
    assert store.mark_sent([("c0", "1", {"state": "sent", "uuid": "u0"}, None)], 60) == ["ok"]
    assert store.inflight()["c0"] == {"owner": store.instance_id, "state": "sent", "uuid": "u0"}
    store.finish([("c0", "a", {"number": "1", "answered": True}, None),
                  ("c1", "a", {"number": "bad"}, {"raw": "bad number", "reason": "space"})])
    assert store.inflight() == {}
    assert store.r.zcard(KEYS.line_lease("a")) == 0
    results = [f for _, f in store.r.xrange(KEYS.results)]
    assert results[0] == {b"number": b"1", b"answered": b"1"}
    assert [f[b"reason"] for _, f in store.r.xrange(KEYS.rejected)] == [b"space"]


def test_raw_bytes_survive_the_inflight_record(store):
    store.r.lpush("q", b'{"params": {"number": "1"}, "variables": {"n": "\xe5\xbc\xa0"}}')
    store.claim_numbers("q", "t", Candidates([[("a", 5)]]), ids(1), 100.0, 60)
    rec = store.inflight()["c0"]
    assert orjson.loads(rec["raw"])["variables"]["n"] == "\u5f20"


def test_renew_leases_restores_pruned_ones(store):
    store.r.lpush("q", "1")
    store.claim_numbers("q", "t", Candidates([[("a", 5)]]), ids(1), 100.0, 60)
    store.r.zrem(KEYS.line_lease("a"), "c0")          # pruned by another host while we were away
    store.renew_leases([("a", "c0")], 200.0, 60)
    assert store.r.zrange(KEYS.line_lease("a"), 0, -1, withscores=True) == [(b"c0", 260.0)]


def test_renewing_a_lease_whose_call_ended_does_not_bring_it_back(store):
    store.r.lpush("q", "1", "2")
    store.claim_numbers("q", "t", Candidates([[("a", 5)]]), ids(2), 100.0, 60)
    store.finish([("c0", "a", {"number": "1"}, None)])        # ended after the renewal was built
    store.renew_leases([("a", "c0"), ("a", "c1")], 200.0, 60)
    assert store.r.zrange(KEYS.line_lease("a"), 0, -1) == [b"c1"]


def test_requeue_and_finish_are_idempotent(store):
    store.r.lpush("q", "1", "2")
    store.claim_numbers("q", "t", Candidates([[("a", 5)]]), ids(2), 100.0, 60)
    rec = store.inflight()["c0"]
    assert store.requeue("c0", rec) == "ok"
    assert store.requeue("c0", rec) == "lost"          # a retry after a lost reply
    assert store.r.lrange("q", 0, -1) == [b"1"]
    items = [("c1", "a", {"number": "2"}, None)]
    assert store.finish(items) == (1, [])
    assert store.finish(items) == (0, ["c1"])
    assert store.r.xlen(KEYS.results) == 1


def test_finish_many_items_and_lines(store):
    for n in range(30):
        store.r.lpush("q", str(n))
    _, items, _ = store.claim_numbers("q", "t", Candidates([[("a", 10), ("b", 10), ("c", 10)]]), ids(30), 100.0, 60)
    batch = [(cid, line, {"number": raw.decode(), "i": str(i)}, {"raw": "x"} if i % 7 == 0 else None)
             for i, (cid, raw, line, _, _) in enumerate(items)]
    assert store.finish(batch).written == 30
    assert store.inflight() == {}
    assert all(store.r.zcard(KEYS.line_lease(x)) == 0 for x in "abc")
    assert store.r.xlen(KEYS.results) == 30 and store.r.xlen(KEYS.rejected) == 5


SCHED = KEYS.schedule_numbers


def test_due_members_only_due_in_order(store):
    store.r.zadd(SCHED, {"a": 100, "b": 50, "c": 200})
    assert store.due_members(150, 10) == [(b"b", 50.0), (b"a", 100.0)]
    assert store.due_members(150, 1) == [(b"b", 50.0)]


def test_claim_scheduled_outcomes(store):
    store.r.zadd(SCHED, {"ok": 90, "exp": 90, "back": 90, "drop": 90, "future": 500})
    cands = Candidates([[("l1", 1)]])
    replies = store.claim_scheduled([(b"ok", "c1", 0, "cfg", cands), (b"exp", "c2", 99, "cfg", cands),
                                     (b"back", "c3", 1000, "cfg", cands), (b"drop", "c4", 0, "cfg", cands),
                                     (b"future", "c5", 0, "cfg", cands), (b"absent", "c6", 0, "cfg", cands)],
                                    100.0, 60, delay=60)
    assert replies == [("ok", "l1", 0), ("expired", None, None), ("requeued", 160.0, None),
                       ("dropped", None, None), ("gone", None, None), ("gone", None, None)]
    assert store.r.zrange(SCHED, 0, -1, withscores=True) == [(b"back", 160.0), (b"future", 500.0)]
    inflight = store.inflight()
    assert {k: v["state"] for k, v in inflight.items()} == {"c1": "claimed", "c2": "expired", "c4": "dropped"}
    assert inflight["c1"]["kind"] == "schedule" and inflight["c1"]["score"] == 90
    assert inflight["c1"]["task"] == "cfg" and inflight["c1"]["line"] == "l1"
    # a claimed member requeued after a crash is due again at its own time
    store.requeue("c1", inflight["c1"])
    assert store.r.zscore(SCHED, "ok") == 90.0


# The seed's rule for a due schedule member, where it lives (CLAIM_SCHEDULED).
# now = 1000, the member is due since 990; "full" means l1's only slot is held.
@pytest.mark.parametrize("expires, full, delay, reply, score_after, state", [
    (0, False, 60, ("ok", "l1", 0), None, "claimed"),                 # with a line, never expires
    (5000, False, 60, ("ok", "l1", 0), None, "claimed"),              # with a line, expires later
    (1000, False, 60, ("ok", "l1", 0), None, "claimed"),              # at expires: not yet past it
    (999, False, 60, ("expired", None, None), None, "expired"),       # past expires, line or not
    (999, True, 60, ("expired", None, None), None, "expired"),
    (5000, True, 60, ("requeued", 1060.0, None), 1060.0, None),       # no line: back at now + delay
    (5000, True, 30, ("requeued", 1030.0, None), 1030.0, None),
    (1060, True, 60, ("requeued", 1060.0, None), 1060.0, None),       # now + delay exactly at expires
    (0, True, 60, ("dropped", None, None), None, "dropped"),          # no line, expires 0
    (1059, True, 60, ("dropped", None, None), None, "dropped"),       # no line, now + delay past expires
])
def test_claim_scheduled_rule(store, expires, full, delay, reply, score_after, state):
    store.r.zadd(SCHED, {"m": 990})
    lease = KEYS.line_lease("l1")
    if full:
        store.r.zadd(lease, {"other": 2000})
    assert store.claim_scheduled([(b"m", "c1", expires, "cfg", Candidates([[("l1", 1)]]))], 1000.0, 60,
                                 delay=delay) == [reply]
    assert store.r.zscore(SCHED, "m") == score_after
    assert {k: v["state"] for k, v in store.inflight().items()} == ({"c1": state} if state else {})
    holders = {b"other"} if full else set()
    if reply[0] == "ok":
        holders.add(b"c1")
        assert store.r.zscore(lease, "c1") == 1060.0
    assert set(store.r.zrange(lease, 0, -1)) == holders


def test_claim_scheduled_second_claimer_gets_gone(store):
    store.r.zadd(SCHED, {"m": 90})
    cands = Candidates([[("l1", 5)]])
    assert store.claim_scheduled([(b"m", "c1", 0, "cfg", cands)], 100.0, 60)[0][0] == "ok"
    assert store.claim_scheduled([(b"m", "c2", 0, "cfg", cands)], 100.0, 60)[0][0] == "gone"


def test_take_rejected_once(store):
    store.r.zadd(SCHED, {"bad": 90})
    assert store.take_rejected(b"bad", "c1", 100.0, "why") is True
    assert store.take_rejected(b"bad", "c2", 100.0, "why") is False
    assert store.inflight()["c1"]["reason"] == "why" and store.r.zcard(SCHED) == 0


def test_due_redials_go_before_the_queue(store):
    store.r.lpush("q", "new1", "new2")
    store.r.zadd(KEYS.retries("t"), {"retry-due": 50, "retry-later": 500})
    status, items, _ = store.claim_numbers("q", "t", Candidates([[("a", 5)]]), ids(3), 100.0, 60)
    assert [(raw, origin) for _, raw, _, _, origin in items] == [
        (b"retry-due", "zset"), (b"new1", "list"), (b"new2", "list")]
    rec = store.inflight()["c0"]
    assert rec["back"] == "zset" and rec["queue"] == KEYS.retries("t") and rec["score"] == 50
    store.requeue("c0", rec)                      # never dialed: back at its own time
    assert store.r.zscore(KEYS.retries("t"), "retry-due") == 50.0


def test_mark_sent_checks_dnc_and_ids(store):
    store.r.lpush("q", "1", "666", "2")
    store.claim_numbers("q", "t", Candidates([[("a", 5)]]), ["c1", "c2", "c3"], 100.0, 60)
    store.r.sadd(KEYS.dnc, "666")
    seen = KEYS.seen("t", "order-1")
    out = store.mark_sent([("c1", "1", {"state": "sent"}, seen), ("c2", "666", {"state": "sent"}, None),
                           ("c3", "2", {"state": "sent"}, seen)], 86400)
    assert out == ["ok", "dnc", "duplicate"]
    assert {cid for cid, rec in store.inflight().items() if rec["state"] == "sent"} == {"c1"}
    assert 86000 < store.r.ttl(seen) <= 86400
    # the same claim sent again (failover, throttle) is not its own duplicate
    assert store.mark_sent([("c1", "1", {"state": "sent", "try": 2}, seen)], 86400) == ["ok"]


def test_requeue_releases_the_id_it_held(store):
    seen = KEYS.seen("t", "order-9")
    store.r.lpush("q", "1")
    store.claim_numbers("q", "t", Candidates([[("a", 5)]]), ids(1), 100.0, 60)
    store.mark_sent([("c0", "1", dict(store.inflight()["c0"], state="sent", seen=seen), seen)], 600)
    store.requeue("c0", store.inflight()["c0"])
    assert not store.r.exists(seen)               # never dialed: the id is free again


def test_finish_counts_and_schedules_redial(store):
    store.r.lpush("q", "1")
    store.claim_numbers("q", "t", Candidates([[("a", 5)]]), ids(1), 100.0, 60)
    item = ("c0", "a", {"number": "1"}, None, (KEYS.counters("t"), {"failed": 1, "cause:USER_BUSY": 1}),
            (KEYS.retries("t"), 400.0, '{"raw":"1","attempt":2}'))
    assert store.finish([item]).written == 1
    assert store.finish([item]).written == 0      # retried: nothing counted or scheduled twice
    assert store.r.hgetall(KEYS.counters("t")) == {b"failed": b"1", b"cause:USER_BUSY": b"1"}
    assert store.r.zrange(KEYS.retries("t"), 0, -1, withscores=True) == [(b'{"raw":"1","attempt":2}', 400.0)]


def test_take_over_only_from_a_host_without_heartbeat(store):
    other = Keys("fs2", "test")
    store.r.hset(other.inflight, mapping={"a": "{}", "b": "{}"})
    store.r.sadd(KEYS.hosts, "fs2")
    store.r.set(other.alive(), 1, ex=60)
    assert store.gone_hosts() == [] and store.take_over("fs2") == []
    assert store.r.hlen(other.inflight) == 2          # the owner keeps everything while alive
    store.r.delete(other.alive())
    assert store.gone_hosts() == ["fs2"]
    assert sorted(store.take_over("fs2", count=1) + store.take_over("fs2")) == ["a", "b"]
    assert store.r.hlen(other.inflight) == 0
    assert store.inflight() == {"a": {"owner": store.instance_id}, "b": {"owner": store.instance_id}}
    assert store.heartbeat(30) is True
    assert 0 < store.r.ttl(KEYS.alive()) <= 30 and store.r.sismember(KEYS.hosts, "fs1")


def test_tasks_with_work_sees_queues_and_due_redials(store):
    tasks = [("a", "qa"), ("b", "qb"), ("c", "qc")]
    assert store.tasks_with_work(tasks) == []
    store.r.lpush("qb", "1")
    store.r.zadd(KEYS.retries("c"), {"later": time.time() + 3600})
    assert store.tasks_with_work(tasks) == [1]
    store.r.zadd(KEYS.retries("c"), {"due": time.time() - 1})
    assert store.tasks_with_work(tasks) == [1, 2]
    assert store.tasks_with_work(tasks[:1]) == []          # a new set of idle tasks re-packs


def test_each_result_is_also_published_when_a_channel_is_set(store):
    pubsub = store.r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("results-live")
    store.r.lpush("q", "1", "2")
    store.claim_numbers("q", "t", Candidates([[("a", 5)]]), ids(2), 100.0, 60)
    store.finish([("c0", "a", {"number": "1", "cause": "USER_BUSY", "billsec": 0}, None)])   # no channel yet
    store.result_channel = "results-live"
    store.finish([("c1", "a", {"number": "2", "cause": "NORMAL_CLEARING", "billsec": 7}, None)])
    messages = []
    for _ in range(50):
        msg = pubsub.get_message(timeout=0.1)
        if msg:
            messages.append(orjson.loads(msg["data"]))
        if messages:
            break
    assert messages == [{"number": "2", "cause": "NORMAL_CLEARING", "billsec": "7"}]
    assert store.r.xlen(KEYS.results) == 2              # the stream keeps every result either way
    pubsub.close()


def test_a_backup_tier_carries_calls_only_while_the_first_is_full(store):
    store.r.lpush("q", *[str(i) for i in range(5)])
    tiers = Candidates([[("p1", 1), ("p2", 1)], [("b1", 5)]], positions=[0, 0])
    status, items, _ = store.claim_numbers("q", "t", tiers, ids(5), 100.0, 60)
    assert [(line, group) for _, _, line, group, _ in items] == [
        ("p1", 0), ("p2", 0), ("b1", 0), ("b1", 0), ("b1", 0)]           # the group's index, whatever the tier
    assert store.inflight()["c2"]["group"] == 0
    store.finish([("c0", "p1", {"number": "0"}, None)])                   # a first-tier line comes free...
    assert store.reserve_line("r1", tiers, 101.0, 60)[1:3] == ("p1", 0)        # ...and is preferred again
    assert store.reserve_line("r2", tiers, 101.0, 60)[1:3] == ("b1", 0)        # full again: the backup tier
