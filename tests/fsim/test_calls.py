"""Scripted call outcomes, throttles and the channel commands."""
import time

import pytest

from cti_dialer.fsim import FreeSwitchSimulator, Outcome
from cti_dialer.fsim.api import SHOW_CHANNELS_HEADER

from tests.conftest import wait_for as wait_until  # noqa: E402
from tests.fsim.esl_client import EslTestClient

pytestmark = pytest.mark.fsim

CHANNEL_EVENTS = ("CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE")


@pytest.fixture
def client(sim):
    c = EslTestClient("127.0.0.1", sim.port)
    assert c.auth().reply_text == "+OK accepted"
    c.subscribe("ALL")
    yield c
    c.close()


def sync(c):
    assert c.api("uuid_exists sync") == "false"


def call_events(client, uuid=None):
    """Names of the channel/job events seen so far (after a round trip)."""
    sync(client)
    out = []
    for f in client.drain_events():
        if f.event_name in CHANNEL_EVENTS and (uuid is None or f.event["Unique-ID"] == uuid):
            out.append((f.event_name, f.event))
        elif f.event_name == "BACKGROUND_JOB":
            out.append(("BACKGROUND_JOB", f.event_body))
    return out


def originate(client, dial="sofia/gateway/gw1/13800138000", uuid="c-1", extra=""):
    return client.bgapi("originate {origination_uuid=%s%s}%s &park() XML default" % (uuid, extra, dial))


# --- outcomes --------------------------------------------------------------------------

def test_answer_then_hangup_after_hold(sim, client):
    sim.default_outcome = Outcome.answer(ring_ms=0, hold_ms=1100)
    job = originate(client)
    assert client.wait_job(job, timeout=5).event_body == "+OK c-1\n"
    hangup = client.wait_event("CHANNEL_HANGUP_COMPLETE", timeout=5).event
    assert hangup["Hangup-Cause"] == "NORMAL_CLEARING"
    # Whole seconds of the switch's times, as it bills: 1.1 s of talk is 1 or 2.
    billsec = int(hangup["variable_end_epoch"]) - int(hangup["variable_answer_epoch"])
    assert hangup["variable_billsec"] == str(billsec) and billsec in (1, 2)
    assert 1080 <= int(hangup["variable_billmsec"]) <= 1120
    assert hangup["variable_answer_epoch"] != "0" and hangup["Answer-State"] == "hangup"
    names = [n for n, _ in call_events(client)]
    assert names == ["CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_HANGUP"]  # the rest was consumed above
    rec = sim.originates()[0]
    assert (rec.outcome_kind, rec.state, rec.answered, rec.billsec) == ("answer", "hungup", True, billsec)


def test_answer_event_order(sim, client):
    job = originate(client)
    wait_until(lambda: sim.originates() and sim.originates()[0].state == "hungup")
    events = call_events(client)
    assert [n for n, _ in events] == ["CHANNEL_CREATE", "CHANNEL_ANSWER", "BACKGROUND_JOB",
                                      "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"]
    assert events[2][1] == "+OK c-1\n"
    assert events[1][1]["Answer-State"] == "answered" and events[1][1]["Unique-ID"] == "c-1"
    assert events[4][1]["variable_billsec"] == "0"
    assert job == sim.originates()[0].job_uuid


@pytest.mark.parametrize("outcome, cause", [
    (Outcome.busy(ring_ms=20), "USER_BUSY"),
    (Outcome.no_answer(), "NO_ANSWER"),
    (Outcome.reject(), "CALL_REJECTED"),
    (Outcome.hangup("NORMAL_TEMPORARY_FAILURE"), "NORMAL_TEMPORARY_FAILURE"),
    (Outcome.fail("NO_ROUTE_DESTINATION", channel=True), "NO_ROUTE_DESTINATION"),
])
def test_callee_failures_hang_up_then_fail_the_job(sim, client, outcome, cause):
    sim.default_outcome = outcome
    job = originate(client)
    assert client.wait_job(job).event_body == "-ERR %s\n" % cause
    hangup = client.wait_event("CHANNEL_HANGUP_COMPLETE").event     # before or after the job
    assert [n for n, _ in call_events(client)] == ["CHANNEL_CREATE", "CHANNEL_HANGUP"]
    assert hangup["Hangup-Cause"] == cause
    assert hangup["variable_billsec"] == "0" and hangup["variable_answer_epoch"] == "0"
    assert sim.originates()[0].cause == cause


def test_ring_time_delays_the_result(sim, client):
    sim.script_number("555", Outcome.busy(ring_ms=150))
    started = time.monotonic()
    job = originate(client, "sofia/gateway/gw1/555")
    assert sim.active_channels()["c-1"].state == "ringing"
    assert client.api("uuid_exists c-1") == "true"
    client.wait_job(job)
    assert time.monotonic() - started >= 0.14
    assert client.api("uuid_exists c-1") == "false"


def test_route_failure_has_no_channel(sim, client):
    sim.script_gateway("down", Outcome.fail("GATEWAY_DOWN"))
    job = originate(client, "sofia/gateway/down/100")
    assert client.wait_job(job).event_body == "-ERR GATEWAY_DOWN\n"
    assert call_events(client) == []
    rec = sim.originates()[0]
    assert (rec.outcome_kind, rec.cause, rec.state, rec.endpoint) == ("fail", "GATEWAY_DOWN", "failed", "down")
    assert sim.max_concurrent == 0


def test_unknown_gateway_when_gateways_are_known():
    s = FreeSwitchSimulator(gateways=["gw1"])
    s.start_in_thread()
    try:
        c = EslTestClient("127.0.0.1", s.port)
        c.auth()
        assert c.api("originate sofia/gateway/gw9/100 &park()") == "-ERR INVALID_GATEWAY\n"
        assert c.api("originate {origination_uuid=k}sofia/gateway/gw1/100 &park()") == "+OK k\n"
        # Non-gateway endpoints are not checked against the list.
        assert c.api("originate {origination_uuid=u}user/1000 &park()") == "+OK u\n"
        assert [r.outcome_kind for r in s.originates()] == ["invalid_gateway", "answer", "answer"]
        c.close()
    finally:
        s.stop_thread()


def test_number_rules_win_over_gateway_rules(sim, client):
    sim.script_gateway("gw1", Outcome.reject())
    sim.script_number("0013800138000", Outcome.busy())
    assert client.api("originate sofia/gateway/gw1/0013800138000 &park()") == "-ERR USER_BUSY\n"
    assert client.api("originate sofia/gateway/gw1/0013800138001 &park()") == "-ERR CALL_REJECTED\n"
    assert client.api("originate sofia/gateway/gw2/0013800138001 &park()").startswith("+OK ")
    sim.clear_scripts()
    assert client.api("originate sofia/gateway/gw1/0013800138000 &park()").startswith("+OK ")


def test_api_originate_blocks_until_the_outcome(sim, client):
    sim.default_outcome = Outcome.no_answer(ring_ms=50)
    assert client.api("originate {origination_uuid=x1}sofia/gateway/g/1 &park()") == "-ERR NO_ANSWER\n"
    sim.default_outcome = Outcome.answer(ring_ms=50, hold_ms=None)
    assert client.api("originate {origination_uuid=x2}sofia/gateway/g/1 &park()") == "+OK x2\n"
    assert list(sim.active_channels()) == ["x2"]
    assert sim.originates()[1].via == "api" and sim.originates()[1].job_uuid is None


# --- throttles ----------------------------------------------------------------------------

def test_sessions_per_second_throttle(sim, client):
    sim.sps = 4                     # the core admits sps - 1 a second
    client.send_raw("".join("bgapi originate {origination_uuid=s%d}sofia/gateway/gw/%d &park()\n"
                            "Job-UUID: job-%d\n\n" % (i, i, i) for i in range(6)))
    assert [client.reply().reply_text for _ in range(6)] == ["+OK Job-UUID: job-%d" % i for i in range(6)]
    results = [client.wait_job("job-%d" % i).event_body for i in range(6)]
    windows = {r.ts // 1 for r in sim.originates()}
    if len(windows) == 1:       # the burst may straddle a window edge, rarely
        assert results == ["+OK s0\n", "+OK s1\n", "+OK s2\n"] + ["-ERR DESTINATION_OUT_OF_ORDER\n"] * 3
        throttled = [r for r in sim.originates() if r.outcome_kind == "throttled"]
        assert [r.uuid for r in throttled] == ["s3", "s4", "s5"]
        assert all(r.state == "failed" and r.cause == "DESTINATION_OUT_OF_ORDER" for r in throttled)
    sync(client)
    uuids = {f[1]["Unique-ID"] for f in call_events(client) if f[0] != "BACKGROUND_JOB"}
    assert uuids == {r.uuid for r in sim.originates() if r.outcome_kind != "throttled"}


def test_max_sessions_throttle(sim, client):
    sim.default_outcome = Outcome.answer(hold_ms=None)
    sim.max_sessions = 2
    assert client.api("originate {origination_uuid=m1}sofia/gateway/gw/1 &park()") == "+OK m1\n"
    assert client.api("originate {origination_uuid=m2}sofia/gateway/gw/2 &park()") == "+OK m2\n"
    assert client.api("originate {origination_uuid=m3}sofia/gateway/gw/3 &park()") == (
        "-ERR DESTINATION_OUT_OF_ORDER\n")
    assert client.api("uuid_exists m3") == "false"
    assert client.api("uuid_kill m1") == "+OK\n"
    assert client.api("originate {origination_uuid=m4}sofia/gateway/gw/4 &park()") == "+OK m4\n"
    assert sorted(sim.active_channels()) == ["m2", "m4"]
    assert sim.max_concurrent == 2


# --- channel commands -------------------------------------------------------------------------

def test_uuid_exists_and_uuid_kill_of_a_ringing_call(sim, client):
    sim.default_outcome = Outcome.answer(ring_ms=60000)
    job = originate(client, uuid="ring-1")
    assert client.api("uuid_exists ring-1") == "true"
    assert client.api("uuid_kill ring-1 ORIGINATOR_CANCEL") == "+OK\n"
    assert client.wait_job(job).event_body == "-ERR ORIGINATOR_CANCEL\n"
    hangup = client.wait_event("CHANNEL_HANGUP_COMPLETE").event
    assert hangup["Hangup-Cause"] == "ORIGINATOR_CANCEL" and hangup["variable_hangup_cause_q850"] == "16"
    assert client.api("uuid_exists ring-1") == "false"
    assert client.api("uuid_kill ring-1") == "-ERR No such channel!\n"
    assert client.api("uuid_kill") == "-USAGE: <uuid> [cause]\n"


def test_uuid_kill_of_an_answered_call(sim, client):
    sim.default_outcome = Outcome.answer(hold_ms=None)
    originate(client, uuid="up-1")
    client.wait_event("CHANNEL_ANSWER")
    assert client.api("uuid_kill up-1") == "+OK\n"
    hangup = client.wait_event("CHANNEL_HANGUP_COMPLETE").event
    assert hangup["Hangup-Cause"] == "NORMAL_CLEARING" and hangup["variable_billsec"] == "0"
    assert hangup["variable_answer_epoch"] != "0"
    assert sim.originates()[0].answered


def test_status(sim, client):
    sim.default_outcome = Outcome.answer(hold_ms=None)
    originate(client, uuid="st-1")
    lines = client.api("status").split("\n")
    assert lines[0].startswith("UP 0 years, 0 days")
    assert lines[1].startswith("FreeSWITCH (Version ") and lines[1].endswith(" is ready")
    assert lines[2] == "1 session(s) since startup"
    assert lines[3].startswith("1 session(s) - peak 1")
    assert "session(s) per Sec out of max" in lines[4]


def test_show_channels(sim, client):
    assert client.api("show channels") == "\n0 total.\n"
    sim.default_outcome = Outcome.answer(ring_ms=60000)
    originate(client, "sofia/gateway/gw1/111", uuid="sc-1")
    originate(client, "sofia/gateway/gw2/222", uuid="sc-2", extra=",origination_caller_id_name=Acme")
    body = client.api("show channels")
    lines = body.split("\n")
    assert lines[0] == SHOW_CHANNELS_HEADER
    rows = [dict(zip(SHOW_CHANNELS_HEADER.split(","), line.split(","))) for line in lines[1:3]]
    assert [(r["uuid"], r["dest"], r["callstate"]) for r in rows] == [("sc-1", "111", "RINGING"),
                                                                     ("sc-2", "222", "RINGING")]
    assert rows[1]["cid_name"] == "Acme" and rows[0]["application"] == "park"
    assert all(len(line.split(",")) == 38 for line in lines[1:3])
    assert lines[3:] == ["", "2 total.", ""]
    assert client.api("show channels count") == "\n2 total.\n"


def test_hupall_and_hangup_all(sim, client):
    sim.default_outcome = Outcome.answer(hold_ms=None)
    for i in range(3):
        originate(client, uuid="h%d" % i)
    wait_until(lambda: len(sim.active_channels()) == 3)
    assert client.api("hupall") == "+OK hangup all channels with cause MANAGER_REQUEST\n"
    assert sim.active_channels() == {}
    causes = {e["Hangup-Cause"] for n, e in call_events(client) if n == "CHANNEL_HANGUP_COMPLETE"}
    assert causes == {"MANAGER_REQUEST"}
    assert "api hupall" in [r.raw for r in sim.commands()]
    originate(client, uuid="h9")
    wait_until(lambda: sim.active_channels())
    assert sim.hangup_all("CALL_REJECTED") == 1
    assert [e["Hangup-Cause"] for n, e in call_events(client) if n == "CHANNEL_HANGUP_COMPLETE"] == [
        "CALL_REJECTED"]


def test_variables_multi_destination_and_records(sim, client):
    sim.default_outcome = Outcome.answer(hold_ms=None)
    originate(client, uuid="v-1", extra=r",absolute_codec_string=pcma\,pcmu")
    answer = client.wait_event("CHANNEL_ANSWER").event
    assert answer["variable_absolute_codec_string"] == "pcma,pcmu"
    client.api("originate [leg=1]sofia/gateway/a/1,[leg=2]sofia/gateway/b/2 &park()")
    first, second = sim.originates()
    assert first.variables == {"origination_uuid": "v-1", "absolute_codec_string": "pcma,pcmu"}
    assert not first.multi_destination
    assert second.multi_destination and second.variables == {"leg": "1"} and second.endpoint == "a"
    assert (first.extension, first.dialplan, first.context) == ("&park()", "XML", "default")
    assert first.raw.startswith("bgapi originate ") and "\nJob-UUID: " in first.raw
    assert sim.max_concurrent == 2 and set(sim.active_channels()) == {"v-1", second.uuid}
    sim.reset_log()
    assert sim.originates() == [] and sim.commands() == [] and sim.max_concurrent == 2


def test_duplicate_origination_uuid_is_refused(sim, client):
    sim.default_outcome = Outcome.answer(hold_ms=None)
    assert client.api("originate {origination_uuid=dup}sofia/gateway/g/1 &park()") == "+OK dup\n"
    assert client.api("originate {origination_uuid=dup}sofia/gateway/g/2 &park()") == (
        "-ERR DESTINATION_OUT_OF_ORDER\n")
    assert sim.originates()[1].outcome_kind == "duplicate_uuid"
