"""Who may act on an in-flight record, and the host name that says which instance runs.

Every test runs on fakeredis and on a real redis-server (conftest). Two
``Store`` objects on one client with different instance ids stand for two
daemon processes.
"""
import orjson
import pytest

from cti_dialer import record_scripts
from cti_dialer.keys import Keys
from cti_dialer.store import HOST_NAME_TTL, Candidates, Store
from tests.store.conftest import KEYS

LINE = Candidates([[("l1", 10)]])
OTHER = Keys("fs2", "test")
SCHED = KEYS.schedule_numbers


def twin(store, keys=KEYS, instance_id="second"):
    """Another daemon instance on the same Redis."""
    return Store(store.r, keys, instance_id=instance_id)


def owner(store, claim_id, keys=KEYS):
    raw = store.r.hget(keys.inflight, claim_id)
    return orjson.loads(raw)["owner"] if raw else None


def claim(store, *numbers, ids=None):
    store.r.lpush("q", *numbers)
    ids = ids or ["c%d" % i for i in range(len(numbers))]
    status, items, _ = store.claim_numbers("q", "t", LINE, ids, 100.0, 60)
    assert status == "ok" and len(items) == len(numbers)
    return ids


def sent(claim_id, number, **extra):
    return (claim_id, number, {"state": "sent", "uuid": "u-" + claim_id, **extra}, None)


def other_steps(store, keys=KEYS):
    """Every step on an existing record, run by ``store`` on claim c0 of ``keys``' host."""
    record = orjson.loads(store.r.hget(keys.inflight, "c0") or b'{"queue": "q", "raw": "1", "line": "l1"}')
    return {
        "mark sent": store.mark_sent([sent("c0", "1")], 60),
        "park": store.update_inflight("c0", dict(record, state="parked")),
        "renew": store.renew_leases([("l1", "c0")], 500.0, 60),
        "requeue": store.requeue("c0", record),
        "finish": store.finish([("c0", "l1", {"number": "1"}, None)]),
    }


LOST_EVERYWHERE = {"mark sent": ["lost"], "park": "lost", "renew": ["c0"], "requeue": "lost",
                   "finish": (0, ["c0"])}


def assert_untouched(store, before):
    """Nothing changed: the record, the queue, the lease, the results."""
    assert store.r.hgetall(KEYS.inflight) == before
    assert store.r.llen("q") == 0 and store.r.xlen(KEYS.results) == 0
    assert store.r.zscore(KEYS.line_lease("l1"), "c0") == 160.0


# --- each script checks the record's owner ------------------------------------------------


def test_every_step_of_another_instance_on_our_record_is_refused_and_changes_nothing(store):
    assert store.claim_host().ok
    claim(store, "1")
    before = store.r.hgetall(KEYS.inflight)
    assert other_steps(twin(store)) == LOST_EVERYWHERE
    assert_untouched(store, before)
    # The owner itself still can.
    assert store.mark_sent([sent("c0", "1")], 60) == ["ok"]
    assert store.update_inflight("c0", {"state": "parked", "queue": "q", "raw": "1", "line": "l1"}) == "ok"
    assert store.renew_leases([("l1", "c0")], 500.0, 60) == []
    assert store.r.zscore(KEYS.line_lease("l1"), "c0") == 560.0
    assert store.finish([("c0", "l1", {"number": "1"}, None)]) == (1, [])


def test_a_step_on_a_record_that_is_gone_is_lost_and_recreates_nothing(store):
    claim(store, "1")
    record = store.inflight()["c0"]
    assert store.requeue("c0", record) == "ok"              # a sweep put it back
    assert store.mark_sent([sent("c0", "1")], 60) == ["lost"]
    assert store.update_inflight("c0", dict(record, state="parked")) == "lost"
    assert store.renew_leases([("l1", "c0")], 500.0, 60) == ["c0"]
    assert store.finish([("c0", "l1", {"number": "1"}, None)]) == (0, ["c0"])
    assert store.inflight() == {} and store.r.lrange("q", 0, -1) == [b"1"]
    assert store.r.zcard(KEYS.line_lease("l1")) == 0 and store.r.xlen(KEYS.results) == 0


def test_a_fresh_claim_requeued_before_its_mark_is_neither_dialed_nor_pushed_twice(store):
    claim(store, "1", "2")
    store.requeue("c0", store.inflight()["c0"])
    seen = KEYS.seen("t", "order-1")
    assert store.mark_sent([("c0", "1", {"state": "sent"}, seen), sent("c1", "2")], 60) == ["lost", "ok"]
    assert not store.r.exists(seen)                          # a lost claim takes no id
    assert set(store.inflight()) == {"c1"} and store.r.lrange("q", 0, -1) == [b"1"]


def test_mark_sent_checks_ownership_before_dnc_and_ids(store):
    assert store.claim_host().ok
    claim(store, "666")
    store.r.sadd(KEYS.dnc, "666")
    assert twin(store).mark_sent([sent("c0", "666")], 60) == ["lost"]
    assert store.mark_sent([sent("c0", "666")], 60) == ["dnc"]


def test_a_parked_claim_taken_over_while_its_host_was_cut_off_is_never_sent_again(store):
    """Issue 12, item 1: fs2 parks a number between two tries, loses Redis, fs1 takes it over."""
    fs2 = Store(store.r, OTHER, instance_id="fs2-a")
    fs2.r.lpush("q", "1")
    fs2.claim_numbers("q", "t", LINE, ["c0"], 100.0, 60)
    claimed = fs2.inflight()["c0"]
    assert fs2.mark_sent([("c0", "1", dict(claimed, state="sent", uuid="u-c0"), None)], 60) == ["ok"]
    parked = dict(fs2.inflight()["c0"], state="parked")
    assert fs2.update_inflight("c0", parked) == "ok"
    assert fs2.heartbeat(30) and fs2.r.delete(OTHER.alive(), OTHER.instance())   # its heartbeat and name expire
    store.r.sadd(KEYS.hosts, "fs2")
    assert store.gone_hosts() == ["fs2"] and store.take_over("fs2") == ["c0"]
    assert owner(store, "c0") == store.instance_id
    # fs2 comes back and tries to send the same number again.
    assert other_steps(fs2, OTHER) == LOST_EVERYWHERE
    assert fs2.r.hlen(OTHER.inflight) == 0                   # not re-created in fs2's hash
    assert store.requeue("c0", store.inflight()["c0"]) == "ok"
    assert store.r.lrange("q", 0, -1) == [b"1"]


@pytest.mark.parametrize("alive", ["heartbeat", "name"])
def test_no_takeover_while_the_host_shows_either_sign_of_life(store, alive):
    fs2 = Store(store.r, OTHER, instance_id="fs2-a")
    fs2.r.lpush("q", "1")
    fs2.claim_numbers("q", "t", LINE, ["c0"], 100.0, 60)
    store.r.sadd(KEYS.hosts, "fs2")
    store.r.set(OTHER.alive() if alive == "heartbeat" else OTHER.instance(), "x", ex=60)
    assert store.gone_hosts() == [] and store.take_over("fs2") == []
    assert owner(fs2, "c0", OTHER) == "fs2-a"


def test_no_takeover_by_an_instance_that_lost_its_own_name(store):
    store.r.hset(OTHER.inflight, "a", "{}")
    assert twin(store).claim_host().ok
    assert store.take_over("fs2") == []
    assert store.r.hlen(OTHER.inflight) == 1


def test_while_we_hold_the_name_a_record_naming_another_instance_is_not_ours(store):
    assert store.claim_host().ok
    store.r.hset(KEYS.inflight, "c0", orjson.dumps({"owner": "ghost", "queue": "q", "raw": "1", "line": "l1"}))
    store.r.zadd(KEYS.line_lease("l1"), {"c0": 160.0})
    before = store.r.hgetall(KEYS.inflight)
    assert other_steps(store) == LOST_EVERYWHERE
    assert_untouched(store, before)


def test_while_nobody_holds_the_name_an_existing_record_is_enough(store):
    """Daemons that do not claim their name yet, and an owner whose claim expired (it is gone)."""
    claim(store, "1", "2")
    assert not store.r.exists(KEYS.instance())
    other = twin(store)
    assert other.mark_sent([sent("c0", "1")], 60) == ["ok"]
    assert other.requeue("c1", store.inflight()["c1"]) == "ok"
    assert other.heartbeat(30) is True and not store.r.exists(KEYS.instance())   # checked, not taken


def test_records_without_an_owner_are_anyones_until_a_name_holder_adopts_them(store):
    """Records written before owners existed (and by older tests) stay usable."""
    store.r.hset(KEYS.inflight, "old", orjson.dumps({"queue": "q", "raw": "1", "state": "claimed"}))
    store.r.hset(KEYS.inflight, "empty", "{}")
    assert store.requeue("old", store.inflight()["old"]) == "ok"
    hold = store.claim_host()
    assert hold.adopted == 1 and store.r.hget(KEYS.inflight, "empty") == (
        b'{"owner":"%s"}' % store.instance_id.encode())


# --- the host name --------------------------------------------------------------------------


def test_a_second_live_instance_cannot_take_the_name_and_can_claim_nothing(store):
    first = store.claim_host()
    assert (first.ok, first.holder, first.ttl) == (True, store.instance_id, HOST_NAME_TTL)
    assert 0 < store.r.pttl(KEYS.instance()) <= HOST_NAME_TTL * 1000
    second = twin(store)
    refused = second.claim_host()
    assert (refused.ok, refused.holder) == (False, store.instance_id)
    assert 0 < refused.ttl <= HOST_NAME_TTL
    store.r.lpush("q", "1")
    store.r.zadd(SCHED, {"m": 90, "bad": 90})
    assert second.claim_numbers("q", "t", LINE, ["x0"], 100.0, 60)[:2] == ("host_taken", [])
    assert second.claim_scheduled([(b"m", "x1", 0, "cfg", LINE)], 100.0, 60) == [("host_taken", None, None)]
    assert second.take_rejected(b"bad", "x2", 100.0, "why") is False
    assert second.heartbeat(30) is False
    assert not store.r.exists(KEYS.alive())                 # the refused one does not speak for the host
    assert store.r.llen("q") == 1 and store.r.zcard(SCHED) == 2 and store.inflight() == {}
    assert store.heartbeat(30) is True and store.r.exists(KEYS.alive())


def test_when_the_first_instance_is_gone_the_next_takes_the_name_and_its_records(store):
    claim(store, "1", "2")
    assert store.claim_host().ok
    store.r.delete(KEYS.instance())                          # its claim expired: it is gone
    second = twin(store)
    hold = second.claim_host()
    assert (hold.ok, hold.adopted) == (True, 2)
    assert owner(store, "c0") == owner(store, "c1") == "second"
    # The first instance, should it come back, owns nothing and claims nothing.
    assert other_steps(store) == LOST_EVERYWHERE
    assert store.heartbeat(30) is False
    assert store.claim_numbers("q", "t", LINE, ["z"], 100.0, 60)[:2] == ("host_taken", [])
    assert second.requeue("c1", second.inflight()["c1"]) == "ok"


def test_a_name_that_expired_while_redis_was_away_is_taken_again_by_the_next_heartbeat(store):
    assert store.claim_host().ok
    claim(store, "1")
    store.r.delete(KEYS.instance())
    assert store.heartbeat(30) is True
    assert store.r.get(KEYS.instance()) == store.instance_id.encode()
    assert store.mark_sent([sent("c0", "1")], 60) == ["ok"]


def test_release_frees_only_our_own_name(store):
    assert store.claim_host().ok
    assert twin(store).release_host() is False and store.r.exists(KEYS.instance())
    assert store.release_host() is True and not store.r.exists(KEYS.instance())
    assert twin(store).claim_host().ok                       # a clean restart need not wait


def test_instance_ids_must_be_safe_inside_a_record(store):
    with pytest.raises(ValueError):
        Store(store.r, KEYS, instance_id='a"b')
    with pytest.raises(ValueError):
        store.claim_host("someone-else")
    assert Store(store.r, KEYS).instance_id != Store(store.r, KEYS).instance_id


# --- members that cannot be encoded or dialed ---------------------------------------------


def test_an_inf_scored_member_is_rejected_and_the_others_of_the_batch_are_claimed(store):
    """Issue 12, item 3: -inf used to vanish and leave the batch's good members stranded."""
    store.r.zadd(SCHED, {"good1": 80, "minus": float("-inf"), "plus": float("inf"), "good2": 90})
    items = [(m, "c-" + m.decode(), 0, "cfg", LINE) for m in (b"good1", b"minus", b"plus", b"good2")]
    replies = store.claim_scheduled(items, 100.0, 60)
    assert replies == [("ok", "l1", 0), ("rejected", "score -inf is not a time to call", None),
                       ("rejected", "score inf is not a time to call", None), ("ok", "l1", 0)]
    assert store.r.zcard(SCHED) == 0
    inflight = store.inflight()
    assert {k: (v["state"], v["score"]) for k, v in inflight.items()} == {
        "c-good1": ("claimed", 80), "c-minus": ("rejected", 0), "c-plus": ("rejected", 0), "c-good2": ("claimed", 90)}


def test_one_failing_item_does_not_hide_the_replies_of_the_others(store):
    store.r.zadd(SCHED, {"a": 80, "b": 80, "c": 80})
    store.r.set(KEYS.line_lease("broken"), "not a sorted set")
    broken = Candidates([[("broken", 5)]])
    replies = store.claim_scheduled([(b"a", "c1", 0, "cfg", LINE), (b"b", "c2", 0, "cfg", broken),
                                     (b"c", "c3", 0, "cfg", LINE)], 100.0, 60)
    assert [r[0] for r in replies] == ["ok", "error", "ok"] and "WRONGTYPE" in replies[1][1]
    assert set(store.inflight()) == {"c1", "c3"}
    assert store.r.zrange(SCHED, 0, -1) == [b"b"]             # left where it was, nothing half-written


def test_take_rejected_writes_a_record_for_an_inf_score(store):
    store.r.zadd(SCHED, {"m": float("-inf")})
    assert store.take_rejected(b"m", "c1", 100.0, "score -inf") is True
    assert store.inflight()["c1"]["score"] == 0 and store.r.zcard(SCHED) == 0


def test_due_members_include_inf_scores_so_they_can_be_rejected(store):
    store.r.zadd(SCHED, {"later": 500, "due": 50, "minus": float("-inf"), "plus": float("inf")})
    assert store.due_members(100.0, 10) == [(b"minus", float("-inf")), (b"due", 50.0), (b"plus", float("inf"))]
    assert store.due_members(100.0, 1) == [(b"minus", float("-inf"))]


def test_inf_scored_redials_are_rejected_around_the_good_ones(store):
    redials = KEYS.retries("t")
    store.r.zadd(redials, {"minus": float("-inf"), "plus": float("inf"), "due": 50, "later": 500})
    store.r.lpush("q", "1")
    status, items, _ = store.claim_numbers("q", "t", LINE, ["c0", "c1", "c2", "c3", "c4"], 100.0, 60)
    assert status == "ok"
    assert [(cid, raw, origin) for cid, raw, _, _, origin in items] == [("c2", b"due", "zset"), ("c3", b"1", "list")]
    inflight = store.inflight()
    assert {cid: inflight[cid]["state"] for cid in inflight} == {
        "c0": "rejected", "c1": "rejected", "c2": "claimed", "c3": "claimed"}
    assert inflight["c0"]["raw"] == "plus" and inflight["c1"]["raw"] == "minus"
    assert store.r.zrange(redials, 0, -1) == [b"later"]
    assert set(store.r.zrange(KEYS.line_lease("l1"), 0, -1)) == {b"c2", b"c3"}


def test_requeue_never_deletes_a_record_it_cannot_put_back(store):
    claim(store, "1")
    record = store.inflight()["c0"]
    store.r.set("q", "not a list")
    with pytest.raises(Exception, match="WRONGTYPE"):
        store.requeue("c0", record)
    assert set(store.inflight()) == {"c0"}


def test_requeue_puts_a_non_finite_score_back_as_due(store):
    claim(store, "1", "2")
    for claim_id, member, score in (("c0", b"m", float("inf")), ("c1", b"n", float("nan"))):
        assert record_scripts.requeue(store.r, inflight=KEYS.inflight, host_name=KEYS.instance(), owner=store.instance_id,
                               claim_id=claim_id, home="z", raw=member, back="zset", score=score, lease=None,
                               seen=None) == "ok"
    assert store.r.zrange("z", 0, -1, withscores=True) == [(b"m", 0.0), (b"n", 0.0)]


# --- idempotency keys -------------------------------------------------------------------------


def test_ids_of_different_tasks_never_share_a_key(store):
    """Issue 12, item 11: task "a:b" id "x" is not task "a" id "b:x", nor schedule config "b" id "x"."""
    pairs = [("a:b", "x"), ("a", "b:x"), ("a:b:x", ""), ("schedule:b", "x"), ("schedule:b:x", "")]
    keys = [KEYS.seen(o, i) for o, i in pairs]
    assert len(set(keys)) == len(keys)
    assert keys[0] == "cti_dialer_seen@test:3:a:b:x" and keys[1] == "cti_dialer_seen@test:1:a:b:x"
    ids = claim(store, "1", "2")
    assert store.mark_sent([("c0", "1", {"state": "sent"}, keys[0]), ("c1", "2", {"state": "sent"}, keys[1])],
                           60) == ["ok", "ok"]
    assert [store.r.get(k) for k in keys[:2]] == [i.encode() for i in ids]


def test_a_delayed_early_park_never_undoes_a_later_try(store):
    assert store.claim_host().ok
    claim(store, "1")
    first = dict(sent("c0", "1")[2], uuid="11111111-1111-4111-8111-111111111111")
    assert store.mark_sent([("c0", "1", first, None)], 60) == ["ok"]
    second = dict(first, uuid="22222222-2222-4222-8222-222222222222", **{"try": 2})
    assert store.mark_sent([("c0", "1", second, None)], 60) == ["ok"]          # the next try went out
    late = dict(first, state="parked")                                          # the first try's note, late
    assert store.update_inflight("c0", late, expected_uuid=first["uuid"]) == "stale"
    assert orjson.loads(store.r.hget(KEYS.inflight, "c0"))["uuid"] == second["uuid"]
    assert store.update_inflight("c0", dict(second, state="parked"), expected_uuid=second["uuid"]) == "ok"
