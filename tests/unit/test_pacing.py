"""pacing.plan and pacing.after_claim: how many calls to start now, and when to look again."""
import pytest

from cti_dialer import pacing
from cti_dialer.pacing import BLOCKED_WAIT, DISCONNECTED_WAIT, IDLE_SAFETY_NET

pytestmark = pytest.mark.unit

BASE = dict(connected=True, state="running", limit=10, active=0, line_capacity=30, throttled_for=0.0, batch=50)


@pytest.mark.parametrize("change, start, look_again", [
    ({}, 10, 0.0),                                        # free slots, lines, window: fill the limit
    ({"active": 7}, 3, 0.0),                              # only what the limit leaves
    ({"active": 10}, 0, BLOCKED_WAIT),                    # at the limit: a call ending wakes it
    ({"active": 12}, 0, BLOCKED_WAIT),                    # over it (limit lowered live): nothing new
    ({"limit": 200}, 30, 0.0),                            # never more than its lines can carry
    ({"limit": 200, "line_capacity": 500}, 50, 0.0),      # nor more than one batch
    ({"line_capacity": 0}, 0, BLOCKED_WAIT),              # no enabled line at all
    ({"state": "paused"}, 0, BLOCKED_WAIT),
    ({"state": "waiting"}, 0, BLOCKED_WAIT),              # outside its window
    ({"state": "finished"}, 0, BLOCKED_WAIT),
    ({"state": "error"}, 0, BLOCKED_WAIT),
    ({"throttled_for": 2.5}, 0, 2.5),                     # the switch asked for a pause
    ({"throttled_for": 2.5, "state": "paused"}, 0, 2.5),
    ({"connected": False}, 0, DISCONNECTED_WAIT),         # no Redis or no switch: nothing at all
    ({"connected": False, "throttled_for": 9}, 0, DISCONNECTED_WAIT),
])
def test_plan(change, start, look_again):
    step = pacing.plan(**{**BASE, **change})
    assert (step.start, step.look_again) == (start, look_again)
    assert bool(step.reason) == (start == 0)


@pytest.mark.parametrize("status, wait", [
    ("ok", 0.0),                    # claimed: look again at once, there may be more
    ("no_line", BLOCKED_WAIT),      # lines full: a call ending anywhere wakes it
    ("empty", IDLE_SAFETY_NET),     # idle: its queue watcher wakes it
    ("something new", BLOCKED_WAIT),
])
def test_after_claim(status, wait):
    assert pacing.after_claim(status) == wait


def test_after_claim_knows_every_status_the_claim_script_returns():
    from cti_dialer import scripts
    assert set(pacing._AFTER_CLAIM) == {scripts.OK, scripts.NO_LINE, scripts.EMPTY}
