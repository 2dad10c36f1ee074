"""Answering machines and the daily attempt cap, at the tracker (issue: agent-aware dialing)."""
import datetime
import json
import zoneinfo

import pytest

from cti_dialer.claim import Claim, Kind
from cti_dialer.esl import Answered, HungUp, JobResult

from .conftest import NOW, World


def claim_of(world, number="1001", cid="c1"):
    world.r.zadd(world.keys.line_lease("l1"), {cid: NOW + 90})
    world.r.hset(world.keys.inflight, cid, "{}")
    return Claim(claim_id=cid, kind=Kind.QUEUE, source_name="t1", home_key="q:t1", raw=number.encode(), entry=None,
                 line="l1", group=0, claimed_at=NOW)


def setup(world, **params):
    world.line("l1", 5)
    world.group("g1", "l1")
    world.task("t1", **params)
    world.catalog.reload_all(NOW)
    return world.catalog.tasks["t1"]


def answered_by(world, uuid, variables=()):
    world.tracker.handle(JobResult(uuid, "+OK " + uuid))
    world.tracker.handle(Answered(uuid=uuid, ts=NOW + 2))
    world.tracker.handle(HungUp(uuid=uuid, cause="NORMAL_CLEARING", billsec=4, answered=True, ts=NOW + 6,
                                variables=tuple(variables)))


@pytest.mark.parametrize("variables, machine", [
    ((("amd_result", "MACHINE"),), True),
    ((("avmd_detect", "true"),), True),          # values compared without case
    ((("amd_result", "HUMAN"),), False),
    ((), False),
])
def test_a_machine_answer_is_its_own_outcome_class(world, variables, machine):
    task = setup(world, redial={"machine": {"count": 1, "interval": 600}})
    claim = claim_of(world)
    world.tracker.start(task, [claim])
    answered_by(world, world.switch.uuids()[0], variables)
    world.write()
    (result,) = world.results()
    assert (result["verdict"], result["machine"], result["answered"]) == (
        ("machine", "1", "0") if machine else ("answered", "0", "1"))
    counters = {k.decode(): int(v) for k, v in world.r.hgetall(world.keys.counters("t1")).items()}
    assert counters.get("machine", 0) == int(machine) and counters.get("answered", 0) == int(not machine)
    assert "failed" not in counters
    assert world.r.zcard(world.keys.retries("t1")) == int(machine)      # the task's machine rule redials
    if machine:
        assert result["redial_class"] == "machine"


def test_machine_variable_names_are_configurable():
    world = World(machine_variables="cpd_result=answering_machine")
    task = setup(world)
    claim = claim_of(world)
    world.tracker.start(task, [claim])
    answered_by(world, world.switch.uuids()[0], [("cpd_result", "ANSWERING_MACHINE")])
    world.write()
    assert world.results()[0]["verdict"] == "machine"


def test_the_daily_cap_holds_a_number_in_redis_until_tomorrow():
    world = World(daily_attempt_cap="2")
    task = setup(world)
    day = datetime.datetime.now(world.config.dialer_timezone).date().isoformat()
    world.r.set(world.keys.attempts(day, "1001"), 2)                   # two attempts today already (any host)
    claim = claim_of(world)
    world.tracker.start(task, [claim])
    world.write()
    assert world.switch.sent == [] and world.results() == []
    (member, score), = world.r.zrange(world.keys.retries("t1"), 0, -1, withscores=True)
    doc = json.loads(member)
    assert doc["raw"] == "1001" and doc["attempt"] == 1                  # not an attempt: the same one waits
    midnight = datetime.datetime.combine(
        datetime.date.fromisoformat(day) + datetime.timedelta(days=1),
        datetime.time(), tzinfo=world.config.dialer_timezone).timestamp()
    assert score == midnight
    assert world.r.hlen(world.keys.inflight) == 0 and world.r.zcard(world.keys.line_lease("l1")) == 0


def test_an_attempt_under_the_cap_is_counted():
    world = World(daily_attempt_cap="2")
    task = setup(world)
    world.tracker.start(task, [claim_of(world)])
    day = datetime.datetime.now(world.config.dialer_timezone).date().isoformat()
    assert world.r.get(world.keys.attempts(day, "1001")) == b"1" and len(world.switch.sent) == 1
    assert 0 < world.r.ttl(world.keys.attempts(day, "1001")) <= 172800


def test_a_number_outside_its_callees_hours_waits_until_they_open():
    ny_now = datetime.datetime.now(zoneinfo.ZoneInfo("America/New_York"))
    begin, end = ny_now + datetime.timedelta(hours=2), ny_now + datetime.timedelta(hours=3)
    world = World()
    task = setup(world, callee_time=True,
                 work_hour=[{"begin": begin.strftime("%H:%M:00"), "end": end.strftime("%H:%M:00")}])
    number = "+12125550123"
    world.tracker.start(task, [claim_of(world, number)])
    world.write()
    assert world.switch.sent == [] and world.results() == []
    (member, score), = world.r.zrange(world.keys.retries("t1"), 0, -1, withscores=True)
    assert json.loads(member)["raw"] == number
    assert score == begin.replace(second=0, microsecond=0).timestamp()        # when New York's hours open
    assert world.r.hlen(world.keys.inflight) == 0


def test_a_number_whose_zones_never_share_open_hours_is_rejected_with_the_reason():
    world = World()
    task = setup(world, callee_time=True, work_hour=[{"begin": "9:00", "end": "10:00"}])
    world.tracker.start(task, [claim_of(world, "+79110000000")])        # Russia: eleven zones
    world.write()
    (rec,) = world.rejected()
    assert "calling hours are never open in all 16 zones" in rec["reason"]
    assert world.switch.sent == []


def test_an_attempt_that_never_went_out_is_given_back():
    from cti_dialer.esl import EslNotSent
    world = World(daily_attempt_cap="2")
    task = setup(world)

    def refuse(command):
        raise EslNotSent("switch gone before a byte was written")
    world.switch.send_async = refuse
    world.tracker.start(task, [claim_of(world)])
    world.write()
    day = datetime.datetime.now(world.config.dialer_timezone).date().isoformat()
    assert world.r.get(world.keys.attempts(day, "1001")) == b"0"          # counted, then given back
    assert world.r.lrange("q:t1", 0, -1) == [b"1001"]                      # and the number waits, unrung
