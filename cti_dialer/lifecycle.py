"""The life of a claim: every state a number taken from Redis can be in, as data.

Everything that decides whether a claim may move from one state to another
lives here, in the style of h11's ``_state.py``: a ``str`` enum of states
(the same strings the in-flight records and the Lua scripts use), an enum of
events, the allowed transitions as one table, and one function that applies
a transition or raises. "A claim ends exactly once" is this table: ``ENDED``
and ``REQUEUED`` have no way out, so a second end raises instead of writing a
second result.

``scripts/make_lifecycle_diagram.py`` draws ``docs/architecture.rst``'s
diagram from ``TRANSITIONS``; a test checks the two agree.
"""
import enum
from typing import Dict, Tuple


class ClaimState(str, enum.Enum):
    """Where a claimed number is. Values are written as-is into in-flight records."""
    CLAIMED = "claimed"      # taken with a line lease, no originate yet: a crash requeues it
    SENT = "sent"            # marked sent with its uuid; the originate is (being) written
    ANSWERED = "answered"    # the callee answered (memory only: the record still says "sent")
    PARKED = "parked"        # between two tries (failover, throttle pause): it has not rung
    EXPIRED = "expired"      # decided, never dialed: a schedule member past its expires
    DROPPED = "dropped"      # decided, never dialed: no line for a schedule member
    REJECTED = "rejected"    # decided, never dialed: malformed or unsafe input
    ENDED = "ended"          # its result is written (or queued to be): final
    REQUEUED = "requeued"    # back where it came from, never rang: final
    LOST = "lost"            # no longer this host's (taken over, settled elsewhere): dropped, final


class ClaimEvent(str, enum.Enum):
    SEND = "send"            # marked sent; the originate goes out
    ANSWER = "answer"        # CHANNEL_ANSWER
    PARK = "park"            # route failure or throttle: wait for the next try
    REQUEUE = "requeue"      # it never rang: give it back
    END = "end"              # the attempt is over: write the result
    LOSE = "lose"            # Redis says the record is gone or another instance owns it


S, E = ClaimState, ClaimEvent

# state -> {event: next state}. A pair missing here is illegal.
TRANSITIONS: Dict[ClaimState, Dict[ClaimEvent, ClaimState]] = {
    S.CLAIMED: {E.SEND: S.SENT, E.REQUEUE: S.REQUEUED, E.END: S.ENDED, E.LOSE: S.LOST},
    S.SENT: {E.ANSWER: S.ANSWERED, E.PARK: S.PARKED, E.REQUEUE: S.REQUEUED, E.END: S.ENDED, E.LOSE: S.LOST},
    S.ANSWERED: {E.END: S.ENDED, E.LOSE: S.LOST},
    S.PARKED: {E.SEND: S.SENT, E.REQUEUE: S.REQUEUED, E.END: S.ENDED, E.LOSE: S.LOST},
    S.EXPIRED: {E.END: S.ENDED},
    S.DROPPED: {E.END: S.ENDED},
    S.REJECTED: {E.END: S.ENDED},
    S.ENDED: {},
    S.REQUEUED: {},
    S.LOST: {},
}

# What a restart (or a takeover) does with an in-flight record in each state
# the record can hold. "requeue": it never rang, give it back; "ask": it may
# be up, ask the switch (followed, or UNKNOWN, never redialed); "settle": the
# outcome was decided before the crash, write its result.
RECOVERY: Dict[ClaimState, str] = {
    S.CLAIMED: "requeue",
    S.PARKED: "requeue",
    S.SENT: "ask",
    S.EXPIRED: "settle",
    S.DROPPED: "settle",
    S.REJECTED: "settle",
}

# Memory-only states are recorded as the state a restart must treat them as.
_RECORDED_AS = {S.ANSWERED: S.SENT}


def recorded_as(state: ClaimState) -> ClaimState:
    """The state an in-flight record says for a claim in ``state``."""
    return _RECORDED_AS.get(state, state)


# An attempt whose originate went out and whose outcome is not acted on yet:
# the only states in which the switch's events about it still count.
ON_THE_SWITCH = frozenset({S.SENT, S.ANSWERED})

# The states a claim can hold while it is still this host's business.
LIVE = frozenset(s for s, out in TRANSITIONS.items() if out)
FINAL = frozenset(s for s, out in TRANSITIONS.items() if not out)


class IllegalTransition(RuntimeError):
    """A claim was asked to do something its state forbids (a bug, never input)."""

    def __init__(self, state: ClaimState, event: ClaimEvent):
        super().__init__("claim in state %r cannot %r" % (state.value, event.value))
        self.state, self.event = state, event


def allows(state: ClaimState, event: ClaimEvent) -> bool:
    return event in TRANSITIONS[state]


def next_state(state: ClaimState, event: ClaimEvent) -> ClaimState:
    """The state after ``event``; raises IllegalTransition (state unchanged) when not allowed."""
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise IllegalTransition(state, event) from None


def edges() -> Tuple[Tuple[ClaimState, ClaimEvent, ClaimState], ...]:
    """Every allowed (from, event, to), in table order: what the diagram draws."""
    return tuple((src, ev, dst) for src, out in TRANSITIONS.items() for ev, dst in out.items())
