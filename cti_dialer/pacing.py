"""How many calls a task may start now, and when to look again. Pure: no I/O, no clock.

The queue dispatcher asks ``plan`` before it claims and ``after_claim`` once
the claim script answered; both are table-tested in tests/unit/test_pacing.py.
"""
import dataclasses

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
_AFTER_CLAIM = {"ok": 0.0, "no_line": BLOCKED_WAIT, "empty": IDLE_SAFETY_NET}


@dataclasses.dataclass(frozen=True)
class Plan:
    start: int          # numbers to claim now (each with its line slot, or fewer)
    look_again: float   # seconds until the next look when nothing wakes the task sooner
    reason: str = ""    # why nothing starts, for debugging


def plan(*, connected: bool, state: str, limit: int, active: int, line_capacity: int,
         throttled_for: float, batch: int) -> Plan:
    """The next step of one task.

    ``state`` is the task's state (``Catalog.task_state``: only "running"
    dials), ``active`` its calls up on this host, ``line_capacity`` the
    summed limits of the enabled lines in its groups (the claim script takes
    the actual free slots, shared with other hosts, atomically),
    ``throttled_for`` the seconds left of the switch's back-off.
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
    start = min(limit - active, line_capacity, batch)
    if start <= 0:
        return Plan(0, BLOCKED_WAIT, "no line")
    return Plan(start, 0.0)


def after_claim(status: str) -> float:
    """Seconds until the next look, from the claim script's status."""
    return _AFTER_CLAIM.get(status, BLOCKED_WAIT)
