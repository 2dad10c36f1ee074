"""pacing.plan and pacing.after_claim: how many calls to start now, and when to look again."""
import collections
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
    assert set(pacing._AFTER_CLAIM) == {scripts.OK, scripts.NO_LINE, scripts.EMPTY, scripts.PACED}


STATUS = """UP 0 years, 0 days, 0 hours, 0 minutes, 25 seconds, 118 milliseconds, 420 microseconds
FreeSWITCH (Version 1.11.3-dev  64bit) is ready
4 session(s) since startup
3 session(s) - peak 4, last 5min 4 
0 session(s) per Sec out of max 30, peak 4, last 5min 4 
4000 session(s) max
min idle cpu 0.00/86.03
"""


def test_parse_switch_limits_reads_the_real_status_reply():
    assert pacing.parse_switch_limits(STATUS) == (30, 4000, 3)
    assert pacing.parse_switch_limits("garbage") == (None, None, None)


def sends_per_tick(budget, start, seconds, step=0.001):
    """Ask for a token every ``step`` s; count what is granted in each whole second (the switch's tick)."""
    ticks = {}
    for i in range(int(seconds / step)):
        now = start + i * step
        if budget.take(1, now):
            ticks[int(now)] = ticks.get(int(now), 0) + 1
    return ticks


@pytest.mark.parametrize("phase", [0.0, 0.013, 0.5, 0.999])
def test_paced_sends_never_exceed_the_switch_window_whatever_the_phase(phase):
    budget = pacing.SendBudget(1, 30)
    budget.set_limits(30, 1000)
    ticks = sends_per_tick(budget, 1000 + phase, 10)
    full = [n for tick, n in ticks.items() if 1001 <= tick <= 1009]
    assert max(full) <= 29                  # the real switch admits sps - 1 per tick
    assert min(full) >= 27                  # and at least 90 % of its sps is used


def test_unknown_limits_leave_sends_unpaced_until_a_refusal():
    budget = pacing.SendBudget(1, 30)
    assert budget.take(50, 100.0) == 50 and budget.wait(100.0) == 0
    for t in range(40):
        budget.take(1, 100.0 + t / 40)
    assert budget.refused(101.0)
    assert budget.wait(101.0) == 1.0 and budget.available(101.5, 10) == 0
    assert budget.rate == pytest.approx(19.5)   # half of the 39 sent in the second before


def test_refusals_pause_and_halve_then_acceptance_climbs_back():
    budget = pacing.SendBudget(1, 30)
    budget.set_limits(30, None)
    limit = budget.limit
    assert budget.refused(100.0) and budget.pause == 1.0 and budget.rate == limit / 2
    assert not budget.refused(100.5)                    # the same burst: one throttle
    assert budget.refused(101.0) and budget.pause == 2.0 and budget.rate == limit / 4
    budget.accepted(104.0, sent_at=103.1)                # accepted after the pause: the throttle is over
    assert budget.pause == 0.0 and budget.rate == pytest.approx(limit / 4 + limit * pacing.INCREASE)
    budget.accepted(104.5, sent_at=103.2)                # at most one raise a second
    assert budget.rate == pytest.approx(limit / 4 + limit * pacing.INCREASE)
    for second in range(20):
        budget.accepted(105.0 + second, sent_at=104.0 + second)
    assert budget.rate == limit                          # never above the switch's own limit


def test_refusals_never_stop_dialing_for_good():
    budget = pacing.SendBudget(1, 4)
    budget.set_limits(30, None)
    for i in range(20):
        budget.refused(100.0 + i * 10)
    assert budget.rate == pacing.SLOWEST and budget.pause == 4


def test_max_sessions_caps_what_starts():
    step = pacing.plan(**{**BASE, "switch_room": 3})
    assert step.start == 3
    assert pacing.plan(**{**BASE, "switch_room": 0}).start == 0


@pytest.mark.parametrize("sps", [3, 30, 2000])
def test_bursts_still_fit_the_switch_window(sps):
    budget = pacing.SendBudget(1, 30)
    budget.set_limits(sps, None)
    ticks = sends_per_tick(budget, 500.3, 6, step=0.0005)
    full = [n for tick, n in ticks.items() if 501 <= tick <= 505]
    assert max(full) <= sps - 1 and min(full) >= 0.9 * (sps - 1)


def test_waking_a_little_late_loses_no_pace():
    budget = pacing.SendBudget(1, 30)
    budget.set_limits(30, None)
    now, sent = 100.0, []
    while now < 110.0:
        now += budget.wait(now) + 0.004          # every wake-up 4 ms late
        if budget.take(1, now):
            sent.append(now)
    per_tick = collections.Counter(int(t) for t in sent)
    assert max(per_tick.values()) <= 29
    assert len(sent) / (sent[-1] - sent[0]) >= 0.99 * budget.limit
