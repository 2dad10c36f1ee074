"""mod_cti's task cps, line rest and fault detection, group rest and redial rules: the pure parts."""
import json
import zoneinfo

import pytest

from cti_dialer import model, pacing, redial
from cti_dialer.outcome import Attempt, CallFacts, Verdict

pytestmark = pytest.mark.unit
TZ = zoneinfo.ZoneInfo("UTC")
TASK = {"line_group": ["g1"], "number_queue": "q", "destination_extension": "8888"}


def task(**params):
    return model.merge_task("t", json.dumps({"params": {**TASK, **params}}), None, TZ)


def line(**params):
    return model.parse_line("l1", json.dumps({"params": {"gateway": "sofia/gateway/gw/", "limit": 2, **params}}))


# --- task cps -------------------------------------------------------------------------------

@pytest.mark.parametrize("value, cps", [(None, 0.0), (5, 5.0), (0.05, 0.05), ("10", 10.0), (2.5, 2.5)])
def test_task_cps(value, cps):
    params = {} if value is None else {"cps": value}
    assert task(**params).cps == cps


@pytest.mark.parametrize("value, reason", [
    (-1, "cps must be a number 0..10000.0"), (0, "cps must be above 0"), ("fast", "cps must be a number"),
    (True, "cps must be a number"), (20000, "cps must be a number 0..10000.0"), ([5], "cps must be a number"),
])
def test_task_cps_errors(value, reason):
    with pytest.raises(model.ModelError) as info:
        task(cps=value)
    assert reason in str(info.value)


@pytest.mark.parametrize("cps, interval, tolerance", [
    (0, 0.0, 0.0), (5, 0.2, 0.05), (0.05, 20.0, 0.05), (100, 0.01, 0.01), (1000, 0.001, 0.001),
])
def test_task_pace_never_lets_two_calls_go_at_once(cps, interval, tolerance):
    assert pacing.task_pace(cps) == pytest.approx((interval, tolerance))


def test_after_claim_looks_again_when_a_gate_opens():
    assert pacing.after_claim("paced", 100.2, 100.0) == pytest.approx(0.2)
    assert pacing.after_claim("no_line", 100.3, 100.0) == pytest.approx(0.3)
    assert pacing.after_claim("no_line", None, 100.0) == pacing.BLOCKED_WAIT
    assert pacing.after_claim("no_line", 99.0, 100.0) == pytest.approx(0.001)     # already open: at once
    assert pacing.after_claim("ok", 105.0, 100.0) == 0.0


# --- lines ---------------------------------------------------------------------------------

def test_line_defaults_have_no_rest_and_no_fault_detection():
    ln = line()
    assert (ln.rest, ln.fault_threshold, ln.fault_try_interval, ln.fault_connect_time) == (0.0, 0, 0.0, None)


def test_line_mod_cti_example_fields():
    ln = model.parse_line("fxo1", json.dumps({
        "params": {"count": 1, "rest": 1000, "fault_threshold": 3, "fault_try_interval": 60000,
                   "fault_condition": {"connect_time": 3000},
                   "dialstring": "sofia/gateway/ims/${destination_number}"},
        "variables": {"origination_caller_id_number": "4001"}}))
    assert ln.limit == 1 and ln.rest == 1.0
    assert (ln.fault_threshold, ln.fault_try_interval, ln.fault_connect_time) == (3, 60.0, 3.0)
    assert ln.gateway == "sofia/gateway/ims/"


@pytest.mark.parametrize("params, reason", [
    ({"rest": -5}, "rest must be a number 0..86400000"),
    ({"rest": "slow"}, "rest must be a number"),
    ({"rest": 10 ** 9}, "rest must be a number"),
    ({"fault_threshold": -1}, "fault_threshold must be an integer"),
    ({"fault_threshold": 2.5}, "fault_threshold must be an integer"),
    ({"fault_threshold": 3}, "fault_threshold 3 needs fault_try_interval"),
    ({"fault_threshold": 3, "fault_try_interval": -1}, "fault_try_interval must be a number"),
    ({"fault_condition": 3000}, "fault_condition must be an object"),
    ({"fault_condition": {"connect_time": "x"}}, "fault_condition.connect_time must be a number"),
    ({"fault_condition": {"ring_time": 1}}, "fault_condition: unknown fields ring_time"),
    ({"areacode": "010"}, "unknown params areacode"),
])
def test_line_health_errors(params, reason):
    with pytest.raises(model.ModelError) as info:
        line(**params)
    assert reason in str(info.value)


def _attempt(answered=False, duration=1.0, cause="NO_ANSWER", job_ok=False, channel=True, **kw):
    att = Attempt(uuid="u", line="l1", group_index=0, sent_at=100.0, job_done=True, job_ok=job_ok,
                  job_cause="" if channel else cause, **kw)
    if channel:
        att.hangup_cause = cause
        att.switch_started, att.switch_ended = 1000.0, 1000.0 + duration
        if answered:
            att.switch_answered, att.answered_at, att.billsec = 1000.5, 100.5, int(duration)
    return att


@pytest.mark.parametrize("att, connect_time, worked", [
    (_attempt(answered=True, cause="NORMAL_CLEARING", job_ok=True), None, True),
    (_attempt(cause="NO_ANSWER", duration=30), None, False),            # every unanswered call counts
    (_attempt(cause="USER_BUSY", duration=0.2), 3.0, False),            # failed fast: the line
    (_attempt(cause="NO_ANSWER", duration=30), 3.0, True),              # it rang: the line works
    (_attempt(cause="NORMAL_TEMPORARY_FAILURE", channel=False), 3.0, False),   # no channel at all
    (_attempt(cause="DESTINATION_OUT_OF_ORDER", channel=False), None, None),   # the switch's throttle
])
def test_line_worked_follows_fault_condition(att, connect_time, worked):
    assert att.line_worked(connect_time, 200.0) is worked


def test_a_command_the_switch_refused_says_nothing_about_the_line():
    att = _attempt(channel=False, cause="permission")
    att.refused_by_switch = True
    assert att.line_worked(None, 200.0) is None


def test_facts_take_q850_from_the_cause_when_no_channel_gave_one():
    facts = _attempt(cause="NO_ROUTE_DESTINATION", channel=False).facts(100.4)
    assert facts.q850 == 3 and facts.sip_code is None and facts.billsec == 0
    att = _attempt(cause="USER_BUSY", duration=4.0, sip_code=486, q850=17)
    assert att.facts(200.0) == CallFacts(sip_code=486, q850=17, duration=4.0, billsec=0.0)


# --- groups --------------------------------------------------------------------------------

MOD_CTI_GROUP = {"enable": True, "rest": 1000, "redialer_count": 3,
                 "redialer_rule": [{"hangup_sipcode": [408, 480], "hangup_cause": [19], "duration": 10, "bill": 1}],
                 "no_redialer_rule": [{"hangup_sipcode": [486], "hangup_cause": [17]}],
                 "line": [["first1", "first2"], ["second1", "second2"]]}


def test_group_mod_cti_example():
    group = model.parse_group("g", json.dumps(MOD_CTI_GROUP))
    assert group.rest == 1.0 and group.tiers == (("first1", "first2"), ("second1", "second2"))
    assert group.redial.count == 3
    assert group.redial.redial == (redial.HangupRule(frozenset({408, 480}), frozenset({19}), 10.0, 1.0),)
    assert group.redial.no_redial == (redial.HangupRule(frozenset({486}), frozenset({17})),)


def test_group_rule_may_be_one_object_and_codes_text():
    group = model.parse_group("g", json.dumps({"line": ["a"], "redialer_count": "2",
                                               "redialer_rule": {"hangup_sipcode": "503"}}))
    assert group.redial == redial.GroupRules(2, (redial.HangupRule(frozenset({503})),), ())


def facts(sip=None, q850=None, duration=5.0, bill=0.0):
    return CallFacts(sip_code=sip, q850=q850, duration=duration, billsec=bill)


RULES = redial.GroupRules(
    count=2,
    redial=(redial.HangupRule(sip_codes=frozenset({480, 408}), duration=10.0),
            redial.HangupRule(q850=frozenset({34}))),
    no_redial=(redial.HangupRule(sip_codes=frozenset({486})), redial.HangupRule(q850=frozenset({1}))))
TASK_STRATEGY = redial.parse({"busy": {"count": 5, "interval": 60}, "no_answer": {"count": 1, "interval": 300}})


@pytest.mark.parametrize("klass, verdict, call, done, expected", [
    # a no-redial rule is final, even where the task's strategy would redial
    ("busy", Verdict.CALLEE, facts(sip=486, q850=17), {}, None),
    (None, Verdict.CALLEE, facts(q850=1), {}, None),
    # a redial rule: due after the task's interval for the class, counted as "group"
    ("no_answer", Verdict.CALLEE, facts(sip=480, q850=19, duration=8), {}, (1300.0, "group")),
    # ...or at once when the task has no rule for the class
    (None, Verdict.ROUTE, facts(q850=34), {}, (1000.0, "group")),
    # every field of a rule must match: 480 after 30 s is past its duration
    ("no_answer", Verdict.CALLEE, facts(sip=480, q850=19, duration=30), {}, (1300.0, "no_answer")),
    # the group's count spent: no redial, the task's strategy included
    ("no_answer", Verdict.CALLEE, facts(sip=408, duration=2), {"group": 2}, None),
    # no rule matches: the task's strategy decides
    ("busy", Verdict.CALLEE, facts(sip=600, q850=17), {}, (1060.0, "busy")),
    # never for calls nobody knows the end of
    (None, Verdict.UNKNOWN, facts(q850=34), {}, None),
    (None, Verdict.DROPPED, facts(q850=34), {}, None),
])
def test_group_rules_then_task_strategy(klass, verdict, call, done, expected):
    assert redial.decide_call(TASK_STRATEGY, RULES, klass, verdict, call, done, 1000.0) == expected


def test_bill_matches_at_most_its_seconds():
    rule = redial.HangupRule(bill=1.0)
    assert rule.matches(facts(bill=1.0)) and not rule.matches(facts(bill=2.0))


def test_without_group_rules_the_task_strategy_alone_decides():
    assert redial.decide_call(TASK_STRATEGY, redial.NO_GROUP_RULES, "busy", Verdict.CALLEE, facts(sip=486), {},
                              10.0) == (70.0, "busy")
    assert redial.decide_call(redial.NO_REDIAL, redial.NO_GROUP_RULES, "busy", Verdict.CALLEE, None, {},
                              10.0) is None
