"""How many calls a task may start now, and when to look again. Pure: no I/O, no clock.

The queue dispatcher asks ``plan`` before it claims and ``after_claim`` once
the claim script answered; both are table-tested in tests/unit/test_pacing.py.
"""
import dataclasses
from typing import Optional, Tuple

# Look again this soon when the switch or Redis is away (their reconnects
# also wake every task, so this is only a safety net).
DISCONNECTED_WAIT = 0.5
# A task that may not dial now (paused, outside its window, at its limit, no
# line): look again this often; a call ending or a config change wakes it sooner.
BLOCKED_WAIT = 1.0
# An idle task (empty queue) is woken by its queue watcher or the idle poll;
# it also looks by itself this often, in case a wake was missed.
IDLE_SAFETY_NET = 30.0

# What the claim script answers (scripts.CLAIM_NUMBERS): the next look.
_AFTER_CLAIM = {"ok": 0.0, "no_line": BLOCKED_WAIT, "empty": IDLE_SAFETY_NET, "paced": BLOCKED_WAIT}


@dataclasses.dataclass(frozen=True)
class Plan:
    start: int          # numbers to claim now (each with its line slot, or fewer)
    look_again: float   # seconds until the next look when nothing wakes the task sooner
    reason: str = ""    # why nothing starts, for debugging


def plan(*, connected: bool, state: str, limit: int, active: int, line_capacity: int,
         throttled_for: float, batch: int, switch_room=None) -> Plan:
    """The next step of one task.

    ``state`` is the task's state (``Catalog.task_state``: only "running"
    dials), ``active`` its calls up on this host, ``line_capacity`` the
    summed limits of the enabled lines in its groups (the claim script takes
    the actual free slots, shared with other hosts, atomically),
    ``throttled_for`` the seconds until the switch's budget allows an
    originate, ``switch_room`` the calls the switch's max-sessions still
    leaves this host (None when unknown).
    """
    if not connected:
        return Plan(0, DISCONNECTED_WAIT, "disconnected")
    if throttled_for > 0:
        return Plan(0, throttled_for, "throttled")
    if state != "running":
        return Plan(0, BLOCKED_WAIT, state)
    if active >= limit:
        return Plan(0, BLOCKED_WAIT, "at its limit")
    # Never ask for more than all its lines could carry: the script would
    # only hand the extra claim ids back unused.
    if switch_room is not None and switch_room <= 0:
        return Plan(0, BLOCKED_WAIT, "switch at max sessions")
    start = min(limit - active, line_capacity, batch, switch_room if switch_room is not None else batch)
    if start <= 0:
        return Plan(0, BLOCKED_WAIT, "no line")
    return Plan(start, 0.0)


def after_claim(status: str, wake: Optional[float] = None, now: float = 0.0) -> float:
    """Seconds until the next look, from the claim script's status and wake time.

    ``wake`` is when a line's or group's rest, a line's outage or the
    task's cps next allows a call: the look comes no later than that.
    """
    wait = _AFTER_CLAIM.get(status, BLOCKED_WAIT)
    if wake is not None:
        wait = min(wait, max(wake - now, 0.001))
    return wait


# A task's cps: calls start at most 1/cps apart, across every host (one GCRA
# key in Redis), with this much tolerance for a look that comes late, so the
# long-run rate is the rate asked for and no second sees a burst.
CPS_TOLERANCE = 0.05


def task_pace(cps: float) -> Tuple[float, float]:
    """(seconds between two calls, tolerance) of a task's cps; (0, 0) for an unpaced task.

    The tolerance is at most one interval (and 50 ms): at most cps x tolerance + 1 calls can start at once.
    """
    if not cps or cps <= 0:
        return 0.0, 0.0
    interval = 1.0 / cps
    return interval, min(CPS_TOLERANCE, interval)


# --- the switch's originate budget -------------------------------------------------

# Of the switch's window, this much is used. The switch admits sps - 1
# originates in each one-second window of its ticks, whatever the phase of
# those windows against our clock. Originates are spaced by the generic cell
# rate algorithm at r = 0.97 (sps - 1) per second with a tolerance of 20 ms:
# any one-second window then holds at most floor(1.02 r) + 1 < sps originates
# (29 at sps 30, 1,979 at sps 2,000), a greenlet that wakes a few
# milliseconds late loses no pace, and at high rates batches still go out
# together (1 + 0.02 r at once).
SPS_MARGIN = 0.985
TOLERANCE = 0.015
# After a refusal the pace is cut by this factor (multiplicative decrease),
# and every refusal-free second it climbs back by this share of the switch's
# limit (additive increase).
DECREASE, INCREASE = 0.5, 0.1
SLOWEST = 0.2           # originates per second: the pace never drops below this


def parse_switch_limits(status: str):
    """(sessions per second, max sessions, sessions now) from ``api status``; None where absent.

    The real switch says, among other lines, ``0 session(s) - peak 4, last
    5min 4``, ``0 session(s) per Sec out of max 30, peak 4, last 5min 4`` and
    ``4000 session(s) max``.
    """
    sps = max_sessions = now = None
    for line in status.splitlines():
        words = line.split()
        if "per Sec out of max" in line:
            number = line.split("out of max", 1)[1].split(",")[0].strip()
            sps = int(number) if number.isdigit() else None
        elif line.strip().endswith("session(s) max") and words[0].isdigit():
            max_sessions = int(words[0])
        elif len(words) > 2 and words[1] == "session(s)" and words[2] == "-" and words[0].isdigit():
            now = int(words[0])
    return sps, max_sessions, now


class SendBudget:
    """How fast this host may write originates: under the switch's limits, cut back on refusals.

    Pure: every method takes ``now``. Originates are spaced at ``rate`` per
    second (``tat`` is when the next one is due, ``TOLERANCE`` early being
    allowed), so the switch never sees more than its window; a refusal
    pauses everything (``pause``, doubling while refusals go on) and halves
    the rate, which climbs back while originates are accepted. With the
    switch's limits unknown and no refusal yet, nothing is paced.
    """

    def __init__(self, backoff: float, backoff_max: float):
        self.backoff, self.backoff_max = backoff, backoff_max
        self.limit = None           # originates/s the switch admits, with the margin (None: unknown)
        self.max_sessions = None
        self.rate = None            # the pace now (None: unpaced)
        self.tat = 0.0              # when the next originate is due at this pace
        self.pause_until = 0.0
        self.pause = 0.0
        self._raised_at = 0.0
        self._recent = []           # send times in the last second (a first pace without limits)

    def set_limits(self, sps, max_sessions):
        """The switch's own limits, as ``api status`` reports them (re-read periodically)."""
        self.max_sessions = max_sessions or None
        self.limit = max(SLOWEST, (sps - 1) * SPS_MARGIN) if sps else None
        if self.limit is not None:
            self.rate = self.limit if self.rate is None else min(self.rate, self.limit)

    def wait(self, now: float) -> float:
        """Seconds until the next originate may go (0: now)."""
        pause = max(0.0, self.pause_until - now)
        if self.rate is None:
            return pause
        return max(pause, self.tat - TOLERANCE - now)

    def available(self, now: float, wanted: int) -> int:
        """How many of ``wanted`` originates may go now (without taking them)."""
        if now < self.pause_until:
            return 0
        if self.rate is None:
            return wanted
        due = max(self.tat, now)
        if due > now + TOLERANCE:
            return 0
        return min(wanted, int((now + TOLERANCE - due) * self.rate) + 1)

    def take(self, wanted: int, now: float) -> int:
        granted = self.available(now, wanted)
        if granted and self.rate is not None:
            self.tat = max(self.tat, now) + granted / self.rate
        if granted:
            self._recent = [t for t in self._recent if t > now - 1.0] + [now] * min(granted, 1000)
        return granted

    def give_back(self, unused: int):
        """Originates taken but not sent (the queue had fewer numbers)."""
        if unused > 0 and self.rate is not None:
            self.tat -= unused / self.rate

    def refused(self, now: float) -> bool:
        """The switch refused an originate for capacity. True when this starts a new pause."""
        if now < self.pause_until:
            return False     # a burst of refusals from one batch is one throttle, not many
        self.pause = min(max(self.pause * 2, self.backoff), self.backoff_max)
        self.pause_until = now + self.pause
        recent = len([t for t in self._recent if t > now - 1.0])
        pace = self.rate if self.rate is not None else max(SLOWEST, float(recent))
        self.rate = max(SLOWEST, pace * DECREASE)
        self.tat = self._raised_at = self.pause_until
        return True

    def accepted(self, now: float, sent_at: float):
        """The switch accepted an originate sent at ``sent_at``."""
        if sent_at >= self.pause_until:
            self.pause = 0.0        # accepted after the last pause ended: the throttle is over
        if self.rate is None or now - self._raised_at < 1.0:
            return
        self._raised_at = now
        if self.limit is None:
            self.rate *= 1 + INCREASE     # no known ceiling: grow until the next refusal
        else:
            self.rate = min(self.limit, self.rate + self.limit * INCREASE)
