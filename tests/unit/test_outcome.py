import pytest

from cti_dialer.outcome import Attempt, Verdict, classify, parse_job_body, ROUTE_CAUSES

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("cause", sorted(ROUTE_CAUSES))
def test_route_causes_fail_over(cause):
    assert classify(cause, answered=False, channel=False) == Verdict.ROUTE
    assert classify(cause, answered=False, channel=True) == Verdict.ROUTE


@pytest.mark.parametrize("cause", ["USER_BUSY", "NO_ANSWER", "NO_USER_RESPONSE", "CALL_REJECTED",
                                   "UNALLOCATED_NUMBER", "NORMAL_CLEARING", "ORIGINATOR_CANCEL",
                                   "SOMETHING_NEW", ""])
def test_callee_outcomes_end_the_attempt(cause):
    assert classify(cause, answered=False, channel=True) == Verdict.CALLEE


def test_throttle_only_without_a_channel():
    assert classify("DESTINATION_OUT_OF_ORDER", answered=False, channel=False) == Verdict.THROTTLE
    assert classify("DESTINATION_OUT_OF_ORDER", answered=False, channel=True) == Verdict.CALLEE


def test_answered_wins_over_cause():
    assert classify("GATEWAY_DOWN", answered=True, channel=True) == Verdict.ANSWERED


@pytest.mark.parametrize("body, expected", [
    ("+OK 1234-5678\n", ("+OK", "1234-5678")),
    ("-ERR USER_BUSY\n", ("-ERR", "USER_BUSY")),
    ("-ERR\n", ("-ERR", "UNKNOWN")),
    ("", ("-ERR", "UNKNOWN")),
    ("garbage", ("-ERR", "UNKNOWN")),
])
def test_job_body(body, expected):
    assert parse_job_body(body) == expected


def test_attempt_finishes_after_job_and_hangup():
    att = Attempt(uuid="u", line="l", group_index=0, sent_at=0)
    assert not att.finished()
    att.hangup_cause = "NORMAL_CLEARING"
    att.billsec = 3
    assert not att.finished()          # hangup seen before the +OK job
    att.job_done, att.job_ok = True, True
    assert att.finished() and att.verdict() == Verdict.ANSWERED


def test_attempt_failed_job_ends_at_once():
    att = Attempt(uuid="u", line="l", group_index=0, sent_at=0, job_done=True, job_ok=False,
                  job_cause="GATEWAY_DOWN")
    assert att.finished() and att.verdict() == Verdict.ROUTE and att.cause() == "GATEWAY_DOWN"


def test_times_come_from_one_clock_and_never_precede_the_send():
    # The switch's clock lags ours and moves in 20 ms steps: its answer time
    # is "before" our send time, yet the call rang 2.5 s.
    att = Attempt(uuid="u", line="l", group_index=0, sent_at=1000.030, answered_at=1000.000,
                  switch_started=999.980, switch_answered=1002.480, switch_ended=1010.480)
    answered, ended, ring = att.times(now=2000.0)
    assert ring == 2.5
    assert answered == pytest.approx(1002.530) and ended == pytest.approx(1010.530)
    assert att.sent_at < answered < ended


def test_times_without_a_channel_use_the_daemons_clock():
    att = Attempt(uuid="u", line="l", group_index=0, sent_at=1000.0)
    assert att.times(now=1000.25) == (None, 1000.25, 0.25)
    late = Attempt(uuid="u", line="l", group_index=0, sent_at=1000.0, answered_at=999.99, ended_at=1003.0)
    assert late.times(now=2000.0) == (1000.0, 1003.0, 0.0)


def test_a_missing_second_leg_never_blames_the_callee():
    att = Attempt(uuid="u", line="l", group_index=0, sent_at=1.0, job_done=True, job_ok=False,
                  job_cause="NO_ANSWER", hangup_cause="NO_ANSWER", never_rang=True)
    assert att.verdict() == Verdict.THROTTLE and att.cause() == "DESTINATION_OUT_OF_ORDER"
