import pytest

from cti_dialer import redial
from cti_dialer.outcome import Verdict

pytestmark = pytest.mark.unit

STRATEGY = redial.parse({"busy": {"count": 2, "interval": 300}, "no_answer": {"count": 1, "interval": 60},
                         "rejected": {"count": 0, "interval": 10}, "route_failure": {"count": 3, "interval": 5},
                         "throttled": {"count": 1, "interval": 1.5}})


@pytest.mark.parametrize("cause, verdict, klass", [
    ("USER_BUSY", Verdict.CALLEE, "busy"),
    ("NO_ANSWER", Verdict.CALLEE, "no_answer"),
    ("NO_USER_RESPONSE", Verdict.CALLEE, "no_answer"),
    ("ORIGINATOR_CANCEL", Verdict.CALLEE, "no_answer"),
    ("CALL_REJECTED", Verdict.CALLEE, "rejected"),
    ("SUBSCRIBER_ABSENT", Verdict.CALLEE, "rejected"),
    ("GATEWAY_DOWN", Verdict.ROUTE, "route_failure"),
    ("DESTINATION_OUT_OF_ORDER", Verdict.THROTTLE, "throttled"),
    ("NORMAL_CLEARING", Verdict.ANSWERED, None),
    ("USER_BUSY", Verdict.ANSWERED, None),
    ("UNALLOCATED_NUMBER", Verdict.CALLEE, None),
    ("NORMAL_CLEARING", Verdict.CALLEE, None),
    ("UNKNOWN", Verdict.UNKNOWN, None),
    ("EXPIRED", Verdict.DROPPED, None),
    ("REJECTED_INPUT", Verdict.REJECTED, None),
])
def test_outcome_class(cause, verdict, klass):
    assert redial.outcome_class(cause, verdict) == klass


@pytest.mark.parametrize("klass, done, expected", [
    ("busy", {}, 1300.0),
    ("busy", {"busy": 1}, 1300.0),
    ("busy", {"busy": 2}, None),              # count used up
    ("busy", {"no_answer": 5}, 1300.0),       # counted per class
    ("no_answer", {"no_answer": 1}, None),
    ("rejected", {}, None),                   # count 0: never
    ("route_failure", {}, 1005.0),
    ("throttled", {}, 1001.5),
    (None, {}, None),                         # answered, unknown...: never
])
def test_decision_table(klass, done, expected):
    assert redial.decide(STRATEGY, klass, done, 1000.0) == expected


def test_default_is_no_redial():
    assert not redial.parse(None)
    for klass in redial.CLASSES:
        assert redial.decide(redial.NO_REDIAL, klass, {}, 0) is None


@pytest.mark.parametrize("value, fragment", [
    ([], "must be an object"),
    ({"bussy": {"count": 1, "interval": 1}}, "unknown outcome class 'bussy'"),
    ({"busy": 3}, "must be {"),
    ({"busy": {"interval": 3}}, "must be {"),
    ({"busy": {"count": -1, "interval": 3}}, "count must be"),
    ({"busy": {"count": True, "interval": 3}}, "count must be"),
    ({"busy": {"count": 1, "interval": "5m"}}, "interval must be"),
    ({"busy": {"count": 1, "interval": 3, "extra": 1}}, "must be {"),
])
def test_invalid_strategies_say_why(value, fragment):
    with pytest.raises(redial.RedialError) as err:
        redial.parse(value)
    assert fragment in str(err.value)
