"""CallTracker: every claim moves through the lifecycle table and ends exactly once."""
import pytest

from cti_dialer.claim import Claim, Kind
from cti_dialer.esl import Answered, HungUp, JobResult
from cti_dialer.lifecycle import ClaimState, IllegalTransition
from cti_dialer.outcome import Verdict

from .conftest import NOW


@pytest.fixture
def task(world):
    world.line("l1", 5)
    world.group("g1", "l1")
    world.task("t1")
    world.catalog.reload_all(NOW)
    return world.catalog.tasks["t1"]


def claim_of(world, number="1001", cid="c1"):
    world.r.zadd(world.keys.line_lease("l1"), {cid: NOW + 90})
    world.r.hset(world.keys.inflight, cid, "{}")
    return Claim(claim_id=cid, kind=Kind.QUEUE, source_name="t1", home_key="q:t1", raw=number.encode(), entry=None,
                 line="l1", group=0, claimed_at=NOW)


def test_answered_call_ends_once_whatever_events_repeat(world, task):
    claim = claim_of(world)
    world.tracker.start(task, [claim])
    assert claim.state is ClaimState.SENT and world.r.hget(world.keys.inflight, "c1")
    uuid = world.switch.uuids()[0]
    world.tracker.handle(JobResult(uuid, "+OK " + uuid))
    world.tracker.handle(Answered(uuid=uuid, ts=NOW + 2))
    assert claim.state is ClaimState.ANSWERED
    hangup = HungUp(uuid=uuid, cause="NORMAL_CLEARING", billsec=7, answered=True, ts=NOW + 9)
    world.tracker.handle(hangup)
    world.tracker.handle(hangup)                 # a duplicate event finds nothing to follow
    assert claim.state is ClaimState.ENDED
    with pytest.raises(IllegalTransition):
        world.tracker.finish(claim, "NORMAL_CLEARING", Verdict.ANSWERED)
    world.write()
    (result,) = world.results()
    assert (result["cause"], result["answered"], result["billsec"]) == ("NORMAL_CLEARING", "1", "7")
    assert world.r.hlen(world.keys.inflight) == 0 and world.r.zcard(world.keys.line_lease("l1")) == 0
    assert world.tracker.claims == {} and world.tracker.by_uuid == {} and not world.tracker.active


def test_a_claim_whose_line_vanished_goes_back_unrung(world, task):
    claim = claim_of(world)
    claim.line = "gone"
    world.tracker.start(task, [claim])
    assert claim.state is ClaimState.REQUEUED and world.switch.sent == []
    world.write()
    assert world.r.lrange("q:t1", 0, -1) == [b"1001"]


def test_do_not_call_is_checked_at_the_last_moment(world, task):
    world.r.sadd(world.keys.dnc, "1001")
    claim = claim_of(world)
    world.tracker.start(task, [claim])
    world.write()
    assert claim.state is ClaimState.ENDED and world.switch.sent == []
    assert [r["cause"] for r in world.results()] == ["DNC_LISTED"]


def test_a_lost_call_is_unknown_and_never_redialed(world, task):
    claim = claim_of(world)
    world.tracker.start(task, [claim])
    world.tracker.reconcile()                    # the switch says the uuid does not exist
    world.write()
    assert claim.state is ClaimState.ENDED
    assert [r["cause"] for r in world.results()] == ["UNKNOWN"]
    assert world.r.llen("q:t1") == 0


def test_a_switch_shutdown_gives_back_what_never_got_a_channel(world, task):
    from cti_dialer.esl import Disconnected, SwitchShutdown
    up, unrung = claim_of(world, "1001", "c1"), claim_of(world, "1002", "c2")
    world.tracker.start(task, [up, unrung])
    uuid_up = world.switch.uuids()[0]
    world.tracker.handle(JobResult(uuid_up, "+OK " + uuid_up))
    world.tracker.handle(Answered(uuid=uuid_up, ts=NOW + 1))
    world.tracker.handle(SwitchShutdown())
    world.tracker.handle(HungUp(uuid=uuid_up, cause="SYSTEM_SHUTDOWN", billsec=4, answered=True, ts=NOW + 5))
    world.tracker.handle(Disconnected("connection lost"))
    world.write()
    assert [(r["number"], r["cause"]) for r in world.results()] == [("1001", "SYSTEM_SHUTDOWN")]
    assert unrung.state is ClaimState.REQUEUED
    assert world.r.lrange("q:t1", 0, -1) == [b"1002"]            # first in line, never UNKNOWN
    assert world.r.hlen(world.keys.inflight) == 0 and world.tracker.claims == {}


def test_a_disconnect_without_shutdown_leaves_calls_to_be_asked_about(world, task):
    from cti_dialer.esl import Disconnected
    claim = claim_of(world)
    world.tracker.start(task, [claim])
    world.tracker.handle(Disconnected("connection lost"))
    assert claim.state is ClaimState.SENT and world.r.llen("q:t1") == 0


def test_a_switch_that_refuses_the_command_uses_up_no_number(world, task):
    claim = claim_of(world)
    world.tracker.start(task, [claim])
    uuid = world.switch.uuids()[0]
    world.tracker.handle(JobResult(uuid, "-ERR permission denied"))
    world.tracker._attempt_over(claim, claim.attempt)          # the grace for a hangup is over
    world.write()
    assert claim.state is ClaimState.REQUEUED and world.results() == []
    assert world.r.lrange("q:t1", 0, -1) == [b"1001"]
    assert world.health.switch_fault == "-ERR permission denied"
    assert world.budget.wait(NOW) > 0 or world.budget.pause > 0    # backed off
    again = claim_of(world, "1002", "c2")
    world.tracker.start(task, [again])
    uuid = world.switch.uuids()[-1]
    world.tracker.handle(JobResult(uuid, "+OK " + uuid))
    assert world.health.switch_fault == ""


def test_a_job_error_with_a_real_cause_is_still_the_callees(world, task):
    claim = claim_of(world)
    world.tracker.start(task, [claim])
    uuid = world.switch.uuids()[0]
    world.tracker.handle(JobResult(uuid, "-ERR USER_BUSY"))
    world.tracker._attempt_over(claim, claim.attempt)
    world.write()
    assert [r["cause"] for r in world.results()] == ["USER_BUSY"] and world.health.switch_fault == ""
