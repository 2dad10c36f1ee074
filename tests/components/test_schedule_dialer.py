"""ScheduleDialer.loop(now): due members dialed, the seed's rule applied, bad members rejected."""
import json

import pytest

from cti_dialer.schedule_dialer import ScheduleDialer

from .conftest import NOW


@pytest.fixture
def scheduler(world):
    world.line("l1", 1)
    world.group("g1", "l1")
    world.r.hset(world.keys.schedule_configs, "c1", json.dumps({"params": {
        "line_group": ["g1"], "destination_extension": "8888"}}))
    world.catalog.reload_all(NOW)
    return ScheduleDialer(config=world.config, catalog=world.catalog, tracker=world.tracker, store=world.store,
                          health=world.health, tz=world.config.dialer_timezone)


def member(number, config="c1", expires=0):
    return json.dumps({"params": {"number": number, "config": config, "expires": expires}})


def test_due_members_are_dialed_and_future_ones_wait(world, scheduler):
    world.r.zadd(world.keys.schedule_numbers, {member("1001"): NOW - 1, member("1002"): NOW + 60})
    assert scheduler.loop(NOW) == world.config.dialer_schedule_poll_interval
    assert world.switch.numbers() == ["1001"]
    assert world.r.zcard(world.keys.schedule_numbers) == 1
    assert world.tracker.active["schedule:c1"] == 1


def test_expired_dropped_requeued_and_rejected_members_each_leave_a_record(world, scheduler):
    world.r.zadd(world.keys.schedule_numbers, {
        member("1001"): NOW - 5,                          # takes the only line
        member("1002", expires=NOW - 1): NOW - 4,         # past expires: not called
        member("1003"): NOW - 3,                          # no line, expires 0: dropped (the seed's rule)
        member("1004", expires=NOW + 3600): NOW - 2,      # no line: back a minute later
        member("1005", config="nope"): NOW - 1,           # names no config: rejected
    })
    scheduler.loop(NOW)
    world.write()
    assert world.switch.numbers() == ["1001"]
    causes = {r["number"]: r["cause"] for r in world.results()}
    # A member that cannot be used is recorded as written (its number may be what is wrong).
    assert causes == {"1002": "EXPIRED", "1003": "NO_LINE_AVAILABLE", member("1005", config="nope"): "REJECTED_INPUT"}
    assert world.r.zscore(world.keys.schedule_numbers, member("1004", expires=NOW + 3600)) == \
        NOW + world.config.dialer_schedule_retry_delay
    assert "does not exist" in world.rejected()[0]["reason"]
    assert world.r.hlen(world.keys.inflight) == 1       # only the call that is up


def test_a_full_batch_asks_to_look_again_at_once(world, scheduler):
    world.line("l1", 500)
    world.catalog.reload_all(NOW)
    batch = world.config.dialer_claim_batch
    world.r.zadd(world.keys.schedule_numbers, {member("1%03d" % i): NOW - 1 for i in range(batch + 1)})
    assert scheduler.loop(NOW) == 0.0
    assert scheduler.loop(NOW) == world.config.dialer_schedule_poll_interval
    assert len(world.switch.sent) == batch + 1


def test_nothing_is_claimed_while_the_switch_is_away(world, scheduler):
    world.r.zadd(world.keys.schedule_numbers, {member("1001"): NOW - 1})
    world.switch.ready.clear()
    scheduler.loop(NOW)
    assert world.switch.sent == [] and world.r.zcard(world.keys.schedule_numbers) == 1


def test_inf_scored_members_are_rejected_and_the_good_ones_around_them_dialed(world, scheduler):
    """Issue 12, item 3: a -inf member vanished and stranded the members claimed with it."""
    world.line("l1", 10)
    world.catalog.reload_all(NOW)
    minus, plus = member("1002"), member("1004")
    world.r.zadd(world.keys.schedule_numbers, {member("1001"): NOW - 5, minus: float("-inf"), member("1003"): NOW - 1,
                                               plus: float("inf"), member("1005"): NOW + 60})
    scheduler.loop(NOW)
    world.write()
    assert sorted(world.switch.numbers()) == ["1001", "1003"]
    results = {r["number"]: r for r in world.results()}
    assert {n: (r["cause"], r["scheduled_at"]) for n, r in results.items()} == {
        minus: ("REJECTED_INPUT", "-inf"), plus: ("REJECTED_INPUT", "inf")}
    assert sorted(r["raw"] for r in world.rejected()) == sorted([minus, plus])
    assert all("is not a time to call" in r["reason"] for r in world.rejected())
    # Nothing stranded: in flight are only the two calls up; the set keeps only the future member.
    states = {json.loads(v)["state"] for v in world.r.hvals(world.keys.inflight)}
    assert world.r.hlen(world.keys.inflight) == 2 and states == {"sent"}
    assert world.r.zrange(world.keys.schedule_numbers, 0, -1) == [member("1005").encode()]
    assert world.tracker.active["schedule:c1"] == 2


def test_a_score_turned_inf_after_the_look_is_rejected_by_the_claim_itself(world, scheduler, monkeypatch):
    world.r.zadd(world.keys.schedule_numbers, {member("2001"): float("-inf")})
    monkeypatch.setattr(world.store, "due_members", lambda now, count: [(member("2001").encode(), NOW - 1)])
    scheduler.loop(NOW)
    world.write()
    assert world.switch.sent == []
    assert [(r["number"], r["cause"]) for r in world.results()] == [("2001", "REJECTED_INPUT")]
    assert world.rejected()[0]["reason"] == "score -inf is not a time to call"
    assert world.r.zcard(world.keys.schedule_numbers) == 0 and world.r.hlen(world.keys.inflight) == 0
