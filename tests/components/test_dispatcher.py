"""QueueDispatcher.loop(now): claims what pacing allows, hands it to the tracker, goes idle."""
import pytest

from cti_dialer import pacing
from cti_dialer.dispatcher import QueueDispatcher
from cti_dialer.esl import HungUp, JobResult
from cti_dialer.lifecycle import ClaimState

from .conftest import NOW


@pytest.fixture
def dispatcher(world):
    d = QueueDispatcher(config=world.config, catalog=world.catalog, tracker=world.tracker, store=world.store,
                        watch_store=world.store, health=world.health, wakeups=world.wakeups,
                        tz=world.config.dialer_timezone)
    d.blocking_ok = False       # no blocking watcher greenlets here: the batched look covers idle tasks
    return d


def setup(world, limit=10, line_limit=2, numbers=("1001", "1002", "1003")):
    world.line("l1", line_limit)
    world.group("g1", "l1")
    world.task("t1", limit=limit)
    for number in numbers:
        world.r.lpush("q:t1", number)
    world.catalog.reload_all(NOW)


def hang_up(world, uuid, cause="NORMAL_CLEARING"):
    world.tracker.handle(JobResult(uuid, "+OK " + uuid))
    world.tracker.handle(HungUp(uuid=uuid, cause=cause, billsec=3, answered=True, ts=NOW + 5))


def test_claims_up_to_the_line_limit_oldest_first(world, dispatcher):
    setup(world)
    wait = dispatcher.loop(NOW)
    assert world.switch.numbers() == ["1001", "1002"]
    assert world.tracker.active["t1"] == 2
    assert world.r.lrange("q:t1", 0, -1) == [b"1003"]
    # The line is full: nothing more until a call ends.
    assert wait == 0.0
    assert dispatcher.loop(NOW) == pacing.BLOCKED_WAIT
    assert len(world.switch.sent) == 2
    assert "t1" in world.wakeups.line_starved


def test_a_call_ending_wakes_the_task_and_frees_its_line(world, dispatcher):
    setup(world)
    dispatcher.loop(NOW)
    dispatcher.loop(NOW)
    hang_up(world, world.switch.uuids()[0])
    world.write()
    assert world.wakeups.queue.is_set()
    dispatcher.loop(NOW + 0.1)           # woken, although its next look is a second away
    assert world.switch.numbers() == ["1001", "1002", "1003"]
    assert [r["cause"] for r in world.results()] == ["NORMAL_CLEARING"]


def test_the_task_limit_holds_whatever_the_lines(world, dispatcher):
    setup(world, limit=1, line_limit=5)
    dispatcher.loop(NOW)
    assert dispatcher.loop(NOW) == pacing.BLOCKED_WAIT
    assert world.switch.numbers() == ["1001"]


def test_an_empty_queue_makes_the_task_idle_until_a_number_arrives(world, dispatcher):
    setup(world, numbers=())
    wait = dispatcher.loop(NOW)
    assert dispatcher.idle == {"t1": "q:t1"}
    assert wait == pytest.approx(world.config.dialer_idle_poll_interval)
    assert dispatcher.loop(NOW + 0.001) > 0          # not due: no look, no claim
    world.r.lpush("q:t1", "2001")
    dispatcher.loop(NOW + 1)                          # the batched look finds it and dispatches
    assert world.switch.numbers() == ["2001"] and dispatcher.idle == {}


def test_nothing_is_claimed_while_paused_throttled_or_disconnected(world, dispatcher):
    setup(world)
    world.switch.ready.clear()
    assert dispatcher.loop(NOW) == pacing.DISCONNECTED_WAIT
    world.switch.ready.set()
    world.wakeups.everything()              # as the switch's reconnect does
    world.budget.pause_until = NOW + 3
    assert dispatcher.loop(NOW) == 3
    world.budget.pause_until = 0
    world.task("t1", enable=False)
    world.catalog.reload_all(NOW)           # wakes everyone
    assert dispatcher.loop(NOW) == pacing.BLOCKED_WAIT
    assert world.switch.sent == [] and world.r.llen("q:t1") == 3


def test_a_bad_entry_is_rejected_and_the_rest_dialed(world, dispatcher):
    setup(world, numbers=("1001", "10 02", "1003"), line_limit=5)
    dispatcher.loop(NOW)
    world.write()
    assert world.switch.numbers() == ["1001", "1003"]
    assert [r["cause"] for r in world.results()] == ["REJECTED_INPUT"]
    assert world.rejected()[0]["raw"] == "10 02"


def test_a_deleted_task_stops_claiming_and_its_calls_finish(world, dispatcher):
    setup(world)
    dispatcher.loop(NOW)
    world.r.hdel(world.keys.task_template, "t1")
    world.catalog.reload_all(NOW)
    dispatcher.loop(NOW + 1)
    assert "t1" not in dispatcher.next_look and len(world.switch.sent) == 2
    hang_up(world, world.switch.uuids()[0])
    claim = next(iter(world.tracker.claims.values()))
    assert claim.state is ClaimState.SENT
    world.write()
    assert len(world.results()) == 1


def test_idle_tasks_with_a_watcher_are_only_looked_at_once_a_second(world, dispatcher):
    setup(world, numbers=())
    dispatcher.loop(NOW)
    dispatcher.watchers["t1"] = "a blocked BLMOVE"      # its watcher wakes it when a number comes
    assert dispatcher.loop(NOW + 0.02) == pytest.approx(1.0)
    world.r.lpush("q:t1", "2001")
    dispatcher.loop(NOW + 0.5)
    assert world.switch.sent == []                         # left to the watcher
    dispatcher.loop(NOW + 1.1)                             # the once-a-second look (redials, safety net)
    assert world.switch.numbers() == ["2001"]


def test_a_short_switch_budget_is_shared_by_the_tasks_in_turn(world, dispatcher):
    world.line("l1", 100)
    world.group("g1", "l1")
    world.task("a")
    world.task("b")
    for i in range(6):
        world.r.lpush("q:a", "10%d" % i)
        world.r.lpush("q:b", "20%d" % i)
    world.catalog.reload_all(NOW)
    world.budget.set_limits(3, None)            # the switch admits 2 a second: about one per 0.5 s here
    now = NOW
    while len(world.switch.sent) < 8:
        now += max(dispatcher.loop(now), 0.001)
    firsts = [number[0] for number in world.switch.numbers()]
    assert firsts.count("1") == firsts.count("2") == 4
    assert now - NOW >= 7 / world.budget.limit - 0.1     # and never faster than the switch allows


class RefusingWatchStore:
    def __init__(self, message):
        self.message = message

    def wait_for_number(self, queue, timeout):
        import redis
        raise redis.ResponseError(self.message)


@pytest.mark.parametrize("message, still_blocking", [
    ("ERR unknown command 'BLMOVE', with args beginning with: ", False),     # Redis before 6.2
    ("UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)", True),
    ("WRONGTYPE Operation against a key holding the wrong kind of value", True),
])
def test_only_a_server_without_blmove_turns_the_watchers_off(world, message, still_blocking):
    d = QueueDispatcher(config=world.config, catalog=world.catalog, tracker=world.tracker, store=world.store,
                        watch_store=RefusingWatchStore(message), health=world.health, wakeups=world.wakeups,
                        tz=world.config.dialer_timezone)
    d.idle["t1"] = "q:t1"
    d._queue_watcher("t1", "q:t1")          # returns on the refusal
    assert d.blocking_ok is still_blocking
