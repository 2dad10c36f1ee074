"""The claim scripts' gates: task cps, line and group rest, line outages and probes (line_gates.LINES)."""
import pytest

from cti_dialer import scripts
from cti_dialer.store import Candidates, Store

from .conftest import KEYS, ids


def gated(lines, rest=0.0, probe=0.0, group_rest=0.0, tiers=None):
    """Candidates for one group "g" of ``lines`` (each limit 5), with rests and probe intervals."""
    tiers = tiers or [lines]
    return Candidates([[(name, 5) for name in tier] for tier in tiers], positions=[0] * len(tiers),
                      entry_gates=[("g", group_rest)] * len(tiers),
                      line_gates={name: (rest, probe) for tier in tiers for name in tier})


def claim_lines(store, cands, n, now, cps=0.0, start=0):
    reply = store.claim_numbers("q", "t", cands, ids(n, start), now, 60, cps)
    return reply.status, [line for _, _, line, _, _ in reply.items], reply.wake


def test_line_rest_spaces_calls_on_one_line(store):
    store.r.lpush("q", *map(str, range(4)))
    cands = gated(["a"], rest=1.0)
    # One, then it rests; "ok" since the batch took something, wake says when the line opens.
    assert claim_lines(store, cands, 3, 100.0) == ("ok", ["a"], 101.0)
    assert claim_lines(store, cands, 1, 100.5, start=5) == ("no_line", [], 101.0)
    assert claim_lines(store, cands, 1, 101.0, start=6)[:2] == ("ok", ["a"])


def test_a_resting_line_is_skipped_like_a_full_one(store):
    store.r.lpush("q", *map(str, range(4)))
    status, lines, wake = claim_lines(store, gated(["a", "b"], rest=2.0), 3, 100.0)
    assert (status, sorted(lines), wake) == ("ok", ["a", "b"], 102.0)


def test_group_rest_spaces_calls_through_the_group(store):
    store.r.lpush("q", *map(str, range(4)))
    cands = gated(["a", "b"], group_rest=0.5)
    assert claim_lines(store, cands, 3, 100.0) == ("ok", ["a"], 100.5)
    assert claim_lines(store, cands, 1, 100.5, start=5)[:2] == ("ok", ["b"])


def test_rests_are_shared_by_every_host(store):
    other = Store(store.r, type(KEYS)("fs2", KEYS.domain))
    store.r.lpush("q", *map(str, range(4)))
    cands = gated(["a"], rest=1.0)
    assert claim_lines(store, cands, 1, 100.0)[:2] == ("ok", ["a"])
    assert other.claim_numbers("q", "t", cands, ["x1"], 100.2, 60).status == "no_line"


def fault(store, line, now, threshold=2, interval=30.0):
    return store.line_result(line, False, threshold, interval, now)


def test_fault_threshold_takes_a_line_out_then_one_probe_decides(store):
    store.r.lpush("q", *map(str, range(10)))
    cands = gated(["a", "b"], probe=30.0)
    assert fault(store, "a", 100.0) == ("counted", 1)
    assert fault(store, "a", 101.0) == ("faulted", 2)
    assert store.line_health()["a"] == {"out": 131.0, "failures": 2.0}
    status, lines, _ = claim_lines(store, cands, 3, 102.0)
    assert lines == ["b", "b", "b"]                                       # the other line carries the calls
    status, lines, _ = claim_lines(store, gated(["a"], probe=30.0), 2, 131.0, start=5)
    assert (status, lines) == ("ok", ["a"])                               # one probe, no more
    assert store.line_health()["a"]["out"] == 161.0                       # the next probe, if this one fails
    assert store.line_result("a", True, 2, 30.0, 140.0) == ("recovered", 0)
    assert "a" not in store.line_health()
    assert claim_lines(store, gated(["a"], probe=30.0), 2, 141.0, start=7)[1] == ["a", "a"]


def test_a_failed_probe_keeps_the_line_out_for_another_interval(store):
    fault(store, "a", 100.0, threshold=1)
    assert fault(store, "a", 131.0, threshold=1) == ("still_out", 2)
    assert store.line_health()["a"]["out"] == 161.0


def test_a_success_resets_the_count_of_consecutive_failures(store):
    fault(store, "a", 100.0, threshold=3)
    fault(store, "a", 101.0, threshold=3)
    assert store.line_result("a", True, 3, 30.0, 102.0) == ("ok", 0)
    assert fault(store, "a", 103.0, threshold=3) == ("counted", 1)


def test_a_line_without_fault_detection_ignores_an_old_outage(store):
    fault(store, "a", 100.0, threshold=1)
    assert claim_lines(store, gated(["a"], probe=0.0), 1, 101.0)[:2] == ("empty", [])
    store.r.lpush("q", "1")
    assert claim_lines(store, gated(["a"], probe=0.0), 1, 101.0)[:2] == ("ok", ["a"])


def test_tiers_move_to_the_backup_while_the_first_tier_is_out(store):
    store.r.lpush("q", *map(str, range(6)))
    cands = gated(None, probe=30.0, tiers=[["p1", "p2"], ["b1"]])
    fault(store, "p1", 100.0, threshold=1)
    fault(store, "p2", 100.0, threshold=1)
    _, lines, _ = claim_lines(store, cands, 2, 101.0)
    assert lines == ["b1", "b1"]
    store.line_result("p1", True, 1, 30.0, 102.0)
    _, lines, _ = claim_lines(store, cands, 2, 103.0, start=2)
    assert lines == ["p1", "p1"]                                          # back: the first tier again


def test_cps_paces_one_task_across_hosts(store):
    other = Store(store.r, type(KEYS)("fs2", KEYS.domain))
    store.r.lpush("q", *map(str, range(20)))
    cands = Candidates([[("a", 100)]])
    reply = store.claim_numbers("q", "t", cands, ids(10), 100.0, 60, cps=5)
    assert (reply.status, len(reply.items), reply.wake) == ("ok", 1, pytest.approx(100.15))
    assert other.claim_numbers("q", "t", cands, ["x1"], 100.1, 60, cps=5).status == "paced"
    assert len(other.claim_numbers("q", "t", cands, ["x2"], 100.16, 60, cps=5).items) == 1
    # Over 10 s of looks every 10 ms by two hosts, 5 calls a second: 50 (+1 for the start).
    taken = 0
    for step in range(1000):
        now = 101.0 + step * 0.01
        who = store if step % 2 else other
        taken += len(who.claim_numbers("q2", "t", cands, ["y%d" % step], now, 60, cps=5).items) \
            if store.r.lpush("q2", str(step)) else 0
    assert 49 <= taken <= 51


def test_an_unpaced_task_claims_its_whole_batch(store):
    store.r.lpush("q", *map(str, range(10)))
    reply = store.claim_numbers("q", "t", Candidates([[("a", 100)]]), ids(10), 100.0, 60)
    assert (reply.status, len(reply.items), reply.wake) == ("ok", 10, None)


def test_failover_takes_the_pace_too(store):
    cands = Candidates([[("a", 5)]])
    assert store.reserve_line("r1", cands, 100.0, 60, "t", 2).status == scripts.OK
    paced = store.reserve_line("r2", cands, 100.1, 60, "t", 2)
    assert (paced.status, paced.wake) == (scripts.PACED, pytest.approx(100.45))
    assert store.reserve_line("r3", cands, 100.45, 60, "t", 2).line == "a"


def test_scheduled_calls_wait_for_a_resting_line_instead_of_being_dropped(store):
    cands = gated(["a"], rest=5.0)
    members = [b'{"number":"1"}', b'{"number":"2"}', b'{"number":"3"}']
    store.r.zadd(KEYS.schedule_numbers, {members[0]: 90, members[1]: 91, members[2]: 92})
    replies = store.claim_scheduled([(members[0], "s1", 0, "cfg", cands), (members[1], "s2", 200.0, "cfg", cands),
                                     (members[2], "s3", 0, "cfg", cands)], 100.0, 60)
    assert replies[0] == ("ok", "a", 0)
    # The line rests until 105: the members wait for it, expires 0 or not.
    assert replies[1] == ("requeued", 105.0, None) and replies[2] == ("requeued", 105.0, None)
    assert store.r.zscore(KEYS.schedule_numbers, members[2]) == 105.0


def test_scheduled_calls_still_follow_the_seeds_rule_for_full_lines(store):
    full = Candidates([[("a", 1)]])
    store.r.zadd("cti_dialer_line_lease@%s:a" % KEYS.domain, {"other": 1000})
    store.r.zadd(KEYS.schedule_numbers, {b'{"number":"1"}': 90})
    assert store.claim_scheduled([(b'{"number":"1"}', "s1", 0, "cfg", full)], 100.0, 60) == [("dropped", None, None)]


def test_a_member_whose_line_rests_past_its_expiry_is_dropped(store):
    cands = gated(["a"], rest=50.0)
    store.r.zadd(KEYS.schedule_numbers, {b'{"number":"1"}': 90, b'{"number":"2"}': 91})
    replies = store.claim_scheduled([(b'{"number":"1"}', "s1", 0, "cfg", cands),
                                     (b'{"number":"2"}', "s2", 120.0, "cfg", cands)], 100.0, 60)
    assert replies[1] == ("dropped", None, None)


def test_a_duplicate_is_dropped_before_the_cap_is_looked_at(store):
    store.r.set(KEYS.seen("t", "x"), "someone-else")
    store.r.set("cap-key", 5)
    store.r.hset(KEYS.inflight, "c1", "{}")
    assert store.mark_sent([("c1", "1001", {}, KEYS.seen("t", "x"), "cap-key")], 60, cap=5) == ["duplicate"]
    assert store.r.get("cap-key") == b"5"
    store.r.hset(KEYS.inflight, "c2", "{}")
    assert store.mark_sent([("c2", "1001", {}, None, "cap-key")], 60, cap=5) == ["capped"]
    assert store.mark_sent([("c2", "1001", {}, None, "cap-key")], 60, cap=6) == ["ok"]
    assert store.r.get("cap-key") == b"6" and store.give_back_attempt("cap-key") == 5
    store.r.delete("cap-key")
    assert store.give_back_attempt("cap-key") == 0 and not store.r.exists("cap-key")
