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
