"""The Q.850 and SIP codes of a hangup, as mod_sofia leaves them on the channel.

The dialer's redial rules read ``variable_hangup_cause_q850`` and its
line-fault detection ``variable_sip_term_status``; both come from the
CHANNEL_HANGUP / CHANNEL_HANGUP_COMPLETE of the call's channel.
"""
import json

import pytest

from cti_dialer.fsim import Outcome
from cti_dialer.fsim.events import Q850, SIP_STATUS, q850

from tests.conftest import wait_for as wait_until  # noqa: E402
from tests.fsim.test_calls import client  # noqa: F401  (the fixture: a client subscribed to ALL)

pytestmark = pytest.mark.fsim

HANGUPS = ("CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE")
SIP_VARIABLES = ("variable_sip_term_status", "variable_sip_term_cause")


def originate(client, dial="sofia/gateway/gw1/13800138000", uuid="h-1", extra=""):
    return client.bgapi("originate {origination_uuid=%s%s}%s &park() XML default" % (uuid, extra, dial))


def hangups(client, count=1):
    """The CHANNEL_HANGUP and CHANNEL_HANGUP_COMPLETE of ``count`` channels, in arrival order."""
    seen = []
    while len(seen) < 2 * count:
        seen.append(client.wait_event(lambda f: f.event_name in HANGUPS, timeout=5).event)
    return seen


def assert_codes(event, cause, sip_status):
    assert event["Hangup-Cause"] == cause
    assert event["variable_hangup_cause"] == cause
    # switch_channel_cause_q850(): FreeSWITCH's own causes (above 127) read 16.
    assert event["variable_hangup_cause_q850"] == str(Q850[cause] if Q850[cause] <= 127 else 16)
    assert event["variable_sip_term_status"] == str(sip_status)
    assert event["variable_sip_term_cause"] == str(Q850[cause])
    names = list(event)
    # mod_sofia sets them just before it hangs the channel up.
    assert (names.index("variable_sip_term_status") < names.index("variable_sip_term_cause")
            < names.index("variable_hangup_cause"))


# --- the tables ----------------------------------------------------------------------------

def test_q850_numbers_are_freeswitchs():
    expected = {
        "UNALLOCATED_NUMBER": 1, "NO_ROUTE_DESTINATION": 3, "NORMAL_CLEARING": 16, "USER_BUSY": 17,
        "NO_USER_RESPONSE": 18, "NO_ANSWER": 19, "SUBSCRIBER_ABSENT": 20, "CALL_REJECTED": 21,
        "NUMBER_CHANGED": 22, "DESTINATION_OUT_OF_ORDER": 27, "INVALID_NUMBER_FORMAT": 28,
        "FACILITY_REJECTED": 29, "NORMAL_UNSPECIFIED": 31, "NORMAL_CIRCUIT_CONGESTION": 34,
        "NETWORK_OUT_OF_ORDER": 38, "NORMAL_TEMPORARY_FAILURE": 41, "SWITCH_CONGESTION": 42,
        "INCOMING_CALL_BARRED": 54, "RECOVERY_ON_TIMER_EXPIRE": 102, "ORIGINATOR_CANCEL": 487,
        "GATEWAY_DOWN": 609,
    }
    for cause, number in expected.items():
        assert Q850[cause] == number, cause
    assert q850("SYSTEM_SHUTDOWN") == "16"
    assert q850("ORIGINATOR_CANCEL") == q850("GATEWAY_DOWN") == "16"
    assert q850("USER_BUSY") == "17"


def test_default_sip_codes():
    expected = {
        "USER_BUSY": 486, "NO_ANSWER": 480, "NO_USER_RESPONSE": 408, "CALL_REJECTED": 603,
        "UNALLOCATED_NUMBER": 404, "NO_ROUTE_DESTINATION": 404, "SUBSCRIBER_ABSENT": 480,
        "INVALID_NUMBER_FORMAT": 484, "NORMAL_CIRCUIT_CONGESTION": 503, "NORMAL_TEMPORARY_FAILURE": 503,
        "SWITCH_CONGESTION": 503, "NETWORK_OUT_OF_ORDER": 503, "DESTINATION_OUT_OF_ORDER": 502,
        "RECOVERY_ON_TIMER_EXPIRE": 408, "ORIGINATOR_CANCEL": 487,
    }
    for cause, status in expected.items():
        assert SIP_STATUS[cause] == status, cause
    # Causes only the switch itself produces have no far-end response to report.
    for cause in ("NORMAL_CLEARING", "GATEWAY_DOWN", "INVALID_GATEWAY", "MANAGER_REQUEST", "SYSTEM_SHUTDOWN"):
        assert cause not in SIP_STATUS


# --- every hangup of a sofia channel carries both codes ------------------------------------

@pytest.mark.parametrize("outcome, cause, sip_status", [
    (Outcome.busy(), "USER_BUSY", 486),
    (Outcome.busy(ring_ms=20), "USER_BUSY", 486),
    (Outcome.no_answer(), "NO_ANSWER", 480),
    (Outcome.reject(), "CALL_REJECTED", 603),
    (Outcome.hangup("NORMAL_TEMPORARY_FAILURE"), "NORMAL_TEMPORARY_FAILURE", 503),
    (Outcome.hangup("RECOVERY_ON_TIMER_EXPIRE"), "RECOVERY_ON_TIMER_EXPIRE", 408),
    (Outcome.hangup("SUBSCRIBER_ABSENT"), "SUBSCRIBER_ABSENT", 480),
    (Outcome.fail("NO_ROUTE_DESTINATION", channel=True), "NO_ROUTE_DESTINATION", 404),
    (Outcome.fail("UNALLOCATED_NUMBER", channel=True), "UNALLOCATED_NUMBER", 404),
    (Outcome.fail("DESTINATION_OUT_OF_ORDER", channel=True), "DESTINATION_OUT_OF_ORDER", 502),
    (Outcome.fail("INVALID_NUMBER_FORMAT", channel=True), "INVALID_NUMBER_FORMAT", 484),
    (Outcome.fail("ORIGINATOR_CANCEL", channel=True), "ORIGINATOR_CANCEL", 487),
    (Outcome.answer(hold_ms=0), "NORMAL_CLEARING", 200),
    (Outcome.cleared(), "NORMAL_CLEARING", 200),
])
@pytest.mark.parametrize("dial", ["sofia/gateway/gw1/13800138000", "sofia/internal/1000@example.com",
                                  "user/1000"])
def test_sofia_hangups_carry_q850_and_sip_codes(sim, client, outcome, cause, sip_status, dial):
    sim.default_outcome = outcome
    originate(client, dial)
    events = hangups(client)
    assert sorted(e["Event-Name"] for e in events) == sorted(HANGUPS)
    for event in events:
        assert event["Channel-Name"].startswith("sofia/")
        assert_codes(event, cause, sip_status)


def test_codes_appear_only_at_the_hangup(sim, client):
    sim.default_outcome = Outcome.answer(hold_ms=50)
    originate(client)
    hangups(client)
    for frame in client.drain_events():
        if frame.event_name in ("CHANNEL_CREATE", "CHANNEL_ANSWER"):
            assert not any(name in frame.event for name in SIP_VARIABLES)


@pytest.mark.parametrize("dial, legs", [("loopback/2000", 2), ("null/2000", 1)])
def test_no_sip_codes_on_other_endpoints(sim, client, dial, legs):
    sim.default_outcome = Outcome.busy(sip_code=486)
    originate(client, dial)
    events = hangups(client, legs)
    for event in events:
        assert not event["Channel-Name"].startswith("sofia/")
        assert event["variable_hangup_cause_q850"] == "17"
        assert not any(name in event for name in SIP_VARIABLES)


# --- overrides and causes without a usual code ---------------------------------------------

@pytest.mark.parametrize("outcome, cause, sip_status", [
    (Outcome.busy(ring_ms=30, sip_code=600), "USER_BUSY", 600),
    (Outcome.no_answer(sip_code=408), "NO_ANSWER", 408),
    (Outcome.reject(sip_code=403), "CALL_REJECTED", 403),
    (Outcome.hangup("NORMAL_TEMPORARY_FAILURE", sip_code=500), "NORMAL_TEMPORARY_FAILURE", 500),
    (Outcome.fail("NO_ANSWER", channel=True, sip_code=408), "NO_ANSWER", 408),
    (Outcome.hangup("INTERWORKING", sip_code=500), "INTERWORKING", 500),
])
def test_sip_code_overrides_the_usual_one(sim, client, outcome, cause, sip_status):
    sim.default_outcome = outcome
    originate(client)
    for event in hangups(client):
        assert_codes(event, cause, sip_status)


def test_a_cause_without_a_usual_code_reports_none(sim, client):
    sim.default_outcome = Outcome.hangup("INTERWORKING")
    originate(client)
    for event in hangups(client):
        assert event["variable_hangup_cause_q850"] == "127"
        assert not any(name in event for name in SIP_VARIABLES)


def test_hangups_the_switch_starts_report_no_sip_code(sim, client):
    sim.script_gateway("slow", Outcome.stalled())
    sim.script_number("30", Outcome.answer(hold_ms=None))
    job = originate(client, "sofia/gateway/slow/1", uuid="timeout", extra=",originate_timeout=1")
    assert client.wait_job(job, timeout=3).event_body == "-ERR NO_ANSWER\n"
    timed_out = hangups(client)
    originate(client, "sofia/gateway/gw1/30", uuid="killed")
    wait_until(lambda: "killed" in sim.active_channels() and sim.active_channels()["killed"].state == "answered")
    assert client.api("uuid_kill killed") == "+OK\n"
    killed = hangups(client)
    for event in timed_out + killed:
        assert event["variable_hangup_cause_q850"] in ("19", "16")
        assert not any(name in event for name in SIP_VARIABLES)


# --- a fast failure and a failure after ringing ---------------------------------------------

def cdr_of(event):
    return {k[len("variable_"):]: v for k, v in event.items() if k.startswith("variable_")}


def assert_unanswered_cdr(cdr):
    whole = int(cdr["end_epoch"]) - int(cdr["start_epoch"])
    assert cdr["duration"] == str(whole)
    assert int(cdr["mduration"]) == int(cdr["end_uepoch"]) // 1000 - int(cdr["start_uepoch"]) // 1000
    assert cdr["answer_epoch"] == "0" and cdr["answer_uepoch"] == "0"
    for name in ("billsec", "billmsec", "billusec", "answersec", "waitsec", "progresssec", "progressmsec",
                 "progress_mediasec", "progress_mediamsec", "progress_epoch", "progress_uepoch",
                 "progress_media_epoch", "progress_media_uepoch"):
        assert cdr[name] == "0", name
    assert cdr["flow_billmsec"] == cdr["mduration"]


def test_fast_failure(sim, client):
    sim.default_outcome = Outcome.fail("NORMAL_TEMPORARY_FAILURE", channel=True, ring_ms=0, sip_code=503)
    job = originate(client)
    assert client.wait_job(job).event_body == "-ERR NORMAL_TEMPORARY_FAILURE\n"
    complete = [e for e in hangups(client) if e["Event-Name"] == "CHANNEL_HANGUP_COMPLETE"][0]
    assert_codes(complete, "NORMAL_TEMPORARY_FAILURE", 503)
    cdr = cdr_of(complete)
    assert_unanswered_cdr(cdr)
    assert cdr["duration"] in ("0", "1") and int(cdr["mduration"]) < 200
    rec = sim.originates()[0]
    assert (rec.outcome_kind, rec.state, rec.cause, rec.billsec) == ("fail", "hungup", "NORMAL_TEMPORARY_FAILURE", 0)


@pytest.mark.parametrize("outcome, cause, sip_status", [
    (Outcome.hangup("NORMAL_TEMPORARY_FAILURE", ring_ms=700, sip_code=503), "NORMAL_TEMPORARY_FAILURE", 503),
    (Outcome.busy(ring_ms=700), "USER_BUSY", 486),
])
def test_failure_after_ringing(sim, client, outcome, cause, sip_status):
    sim.default_outcome = outcome
    job = originate(client)
    assert client.wait_job(job, timeout=5).event_body == "-ERR %s\n" % cause
    complete = [e for e in hangups(client) if e["Event-Name"] == "CHANNEL_HANGUP_COMPLETE"][0]
    assert_codes(complete, cause, sip_status)
    cdr = cdr_of(complete)
    assert_unanswered_cdr(cdr)
    # Switch times move in 20 ms steps and lag the wall clock a little.
    assert 660 <= int(cdr["mduration"]) <= 1500
    assert cdr["duration"] in ("0", "1", "2")


# --- the JSON form --------------------------------------------------------------------------

def test_from_dict_round_trip():
    cases = [
        ({"kind": "busy", "ring_ms": 3000, "sip_code": 486}, Outcome.busy(ring_ms=3000, sip_code=486)),
        ({"kind": "no_answer", "sip_code": 408}, Outcome.no_answer(sip_code=408)),
        ({"kind": "reject", "ring_ms": 5, "sip_code": 603}, Outcome.reject(ring_ms=5, sip_code=603)),
        ({"kind": "hangup", "cause": "NORMAL_TEMPORARY_FAILURE", "sip_code": 503},
         Outcome.hangup("NORMAL_TEMPORARY_FAILURE", sip_code=503)),
        ({"kind": "fail", "cause": "NO_ANSWER", "channel": True, "sip_code": 408},
         Outcome.fail("NO_ANSWER", channel=True, sip_code=408)),
        ({"kind": "busy", "sip_code": None}, Outcome.busy()),
        ({"kind": "busy"}, Outcome.busy()),
    ]
    for d, outcome in cases:
        parsed = Outcome.from_dict(json.loads(json.dumps(d)))
        assert parsed == outcome
        assert parsed.sip_code == d.get("sip_code")
    assert Outcome.busy().sip_code is None and Outcome.answer().sip_code is None


@pytest.mark.parametrize("bad", [
    {"kind": "busy", "sip_code": 99}, {"kind": "busy", "sip_code": 700}, {"kind": "busy", "sip_code": "486"},
    {"kind": "busy", "sip_code": 486.0}, {"kind": "busy", "sip_code": True},
    {"kind": "answer", "sip_code": 200}, {"kind": "answer", "cleared_at_answer": True, "sip_code": 200},
    {"kind": "stalled", "sip_code": 480},
    {"kind": "fail", "cause": "GATEWAY_DOWN", "sip_code": 503},      # no channel: no INVITE was answered
    {"kind": "busy", "sip_status": 486},
])
def test_from_dict_rejects_bad_sip_codes(bad):
    with pytest.raises(ValueError):
        Outcome.from_dict(bad)


@pytest.mark.parametrize("make", [
    lambda: Outcome.busy(sip_code=0), lambda: Outcome.no_answer(sip_code=1000),
    lambda: Outcome.reject(sip_code=False), lambda: Outcome.hangup("USER_BUSY", sip_code="486"),
    lambda: Outcome.fail("GATEWAY_DOWN", sip_code=503), lambda: Outcome("answer", sip_code=200),
    lambda: Outcome("stalled", "NO_ANSWER", sip_code=480),
])
def test_factories_reject_bad_sip_codes(make):
    with pytest.raises(ValueError):
        make()
