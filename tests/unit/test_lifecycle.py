"""The claim lifecycle table: what is allowed, what raises, what a restart does."""
import pytest

from cti_dialer import lifecycle
from cti_dialer.lifecycle import ClaimEvent as E, ClaimState as S, IllegalTransition

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("state, event, after", [
    (S.CLAIMED, E.SEND, S.SENT),
    (S.CLAIMED, E.REQUEUE, S.REQUEUED),
    (S.CLAIMED, E.END, S.ENDED),            # rejected entry, do-not-call, duplicate id
    (S.SENT, E.ANSWER, S.ANSWERED),
    (S.SENT, E.PARK, S.PARKED),             # route failure or throttle
    (S.SENT, E.REQUEUE, S.REQUEUED),        # not a byte of the originate was written
    (S.SENT, E.END, S.ENDED),
    (S.ANSWERED, E.END, S.ENDED),
    (S.PARKED, E.SEND, S.SENT),             # the next try
    (S.PARKED, E.REQUEUE, S.REQUEUED),      # stopping, line gone
    (S.PARKED, E.END, S.ENDED),             # every group failed
    (S.EXPIRED, E.END, S.ENDED),
    (S.DROPPED, E.END, S.ENDED),
    (S.REJECTED, E.END, S.ENDED),
    (S.PARKED, E.LOSE, S.LOST),             # taken over while parked: never sent again here
    (S.ANSWERED, E.LOSE, S.LOST),           # settled by the host that took it over
])
def test_allowed(state, event, after):
    assert lifecycle.allows(state, event)
    assert lifecycle.next_state(state, event) is after


@pytest.mark.parametrize("state, event", [
    (S.ENDED, E.END),            # ends exactly once
    (S.ENDED, E.REQUEUE),        # an ended claim never goes back
    (S.REQUEUED, E.END),         # a requeued claim never gets a result here
    (S.REQUEUED, E.SEND),
    (S.ANSWERED, E.PARK),        # answered calls never fail over
    (S.ANSWERED, E.REQUEUE),     # nor go back to be dialed again
    (S.ANSWERED, E.SEND),
    (S.SENT, E.SEND),            # one originate per try
    (S.EXPIRED, E.SEND),         # decided claims are never dialed
    (S.DROPPED, E.SEND),
    (S.REJECTED, E.SEND),
    (S.CLAIMED, E.ANSWER),
    (S.LOST, E.SEND),            # a lost claim is never dialed again here
    (S.LOST, E.END),             # nor given a result by this host
    (S.ENDED, E.LOSE),
])
def test_illegal_raises_and_names_both(state, event):
    assert not lifecycle.allows(state, event)
    with pytest.raises(IllegalTransition) as info:
        lifecycle.next_state(state, event)
    assert info.value.state is state and info.value.event is event
    assert state.value in str(info.value) and event.value in str(info.value)


def test_every_state_has_a_row_and_final_states_have_no_way_out():
    assert set(lifecycle.TRANSITIONS) == set(S)
    assert lifecycle.FINAL == {S.ENDED, S.REQUEUED, S.LOST}
    assert all(dst in S for _, _, dst in lifecycle.edges())


def test_every_live_state_can_still_end_or_go_back():
    for state in lifecycle.LIVE:
        assert lifecycle.allows(state, E.END) or lifecycle.allows(state, E.REQUEUE)


def test_recovery_covers_exactly_the_states_a_record_can_hold():
    recorded = {lifecycle.recorded_as(s) for s in lifecycle.LIVE}
    assert set(lifecycle.RECOVERY) == recorded
    assert lifecycle.recorded_as(S.ANSWERED) is S.SENT
    # Never rang: back to be dialed; may have rung: ask the switch, never redial.
    assert lifecycle.RECOVERY[S.CLAIMED] == lifecycle.RECOVERY[S.PARKED] == "requeue"
    assert lifecycle.RECOVERY[S.SENT] == "ask"


def test_states_are_the_strings_records_hold():
    assert S("claimed") is S.CLAIMED and S.SENT == "sent" and S.PARKED.value == "parked"
