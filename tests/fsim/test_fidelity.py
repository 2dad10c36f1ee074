"""What the captures of a real FreeSWITCH showed and the simulator now does too.

Throttles are in test_throttle.py, the shutdown in test_shutdown.py and the
whole captured session in test_real_switch.py.
"""
import time

import pytest

from cti_dialer.fsim import FreeSwitchSimulator, Outcome

from tests.conftest import wait_for as wait_until  # noqa: E402
from tests.fsim.capture import capture_path, event_headers, read_items
from tests.fsim.esl_client import EslTestClient

pytestmark = pytest.mark.fsim


def connect(sim, *events):
    c = EslTestClient("127.0.0.1", sim.port)
    assert c.auth().reply_text == "+OK accepted"
    if events:
        c.subscribe(*events)
    return c


@pytest.fixture
def client(sim):
    c = connect(sim, "ALL")
    yield c
    c.close()


def settle(sim, client, n=1):
    """Every originate so far is over and every event it caused has arrived."""
    wait_until(lambda: len(sim.originates()) >= n and all(
        r.state in ("hungup", "failed") for r in sim.originates()))
    wait_until(lambda: not sim._switch._timers)     # a job result may trail its hangup by up to 60 ms
    client.api("uuid_exists sync")


# --- 1. ":_:" splits the dial string before its variables are read -----------------------

def test_enterprise_split_dials_what_follows_as_captured(sim, client):
    sent = [i.command for i in read_items(capture_path("07_real_enterprise_injection.txt"))
            if i.kind == "sent" and i.command.startswith("bgapi originate")][0]
    job = sent.split("Job-UUID: ")[1]
    chosen = sent.split("origination_uuid=")[1].split("}")[0]
    client.send_raw(sent + "\n\n")
    result = client.wait_job(job).event_body
    rec = sim.originates()[0]
    # The real switch dialed loopback/1999, not 2010, under a uuid the client never chose.
    assert (rec.dialed, rec.endpoint, rec.number, rec.enterprise) == ("loopback/1999", "loopback", "1999", True)
    assert rec.uuid != chosen and result == "+OK %s\n" % rec.uuid
    assert rec.variables == {"ignore_early_media": "true"}      # none of the client's variables
    settle(sim, client)
    creates = [f.event for f in client.drain_events() if f.event_name == "CHANNEL_CREATE"]
    assert [e["Channel-Name"] for e in creates] == ["loopback/1999-a", "loopback/1999-b"]
    assert creates[0]["Unique-ID"] == rec.uuid
    assert creates[0]["variable_ignore_early_media"] == "true"
    assert creates[0]["variable_originate_early_media"] == "false"
    assert "variable_x_num" not in creates[0] and "variable_origination_uuid" not in creates[0]
    assert creates[0]["Caller-Caller-ID-Number"] == "0000000000"     # 4001 went with the lost piece


def test_enterprise_pieces_that_cannot_be_dialed_are_skipped(sim, client):
    reply = client.api("originate <x=1>{broken:_:sofia/gateway/gw/55 &park()")
    rec = sim.originates()[0]
    assert reply == "+OK %s\n" % rec.uuid
    assert (rec.dialed, rec.endpoint, rec.number) == ("sofia/gateway/gw/55", "gw", "55")
    assert rec.variables == {"x": "1", "ignore_early_media": "true"}


# --- 2. a failed call's job result and hangup come in either order, from a seed ----------

def _orders(seed, calls=24):
    sim = FreeSwitchSimulator(seed=seed)
    sim.start_in_thread()
    try:
        sim.default_outcome = Outcome.busy()
        c = connect(sim, "BACKGROUND_JOB", "CHANNEL_HANGUP_COMPLETE")
        out = []
        for i in range(calls):
            job = c.bgapi("originate {origination_uuid=o%d}sofia/gateway/gw/%d &park()" % (i, i))
            first = c.read_frame()
            second = c.read_frame()
            names = [first.event_name, second.event_name]
            assert sorted(names) == ["BACKGROUND_JOB", "CHANNEL_HANGUP_COMPLETE"]
            job_event = first if names[0] == "BACKGROUND_JOB" else second
            assert job_event.event["Job-UUID"] == job
            gap = abs(int(second.event["Event-Date-Timestamp"]) - int(first.event["Event-Date-Timestamp"]))
            assert gap <= 500_000       # up to ~60 ms on the switch; generous for a loaded test machine
            out.append(names[0] == "BACKGROUND_JOB")
        c.close()
        return out
    finally:
        sim.stop_thread()


def test_job_result_and_hangup_order_is_random_but_seeded():
    first = _orders(7)
    assert 2 <= sum(first) <= 16                  # about a third job-first
    assert _orders(7) == first                    # the same seed, the same run
    assert _orders(8) != first


# --- 5. "-ERR NORMAL_CLEARING" after CHANNEL_ANSWER ----------------------------------------

def test_callee_that_answers_and_hangs_up_at_once(sim, client):
    sim.script_number("9000", Outcome.cleared(ring_ms=20))
    job = client.bgapi("originate {origination_uuid=cl}loopback/9000 8800 XML default")
    assert client.wait_job(job).event_body == "-ERR NORMAL_CLEARING\n"
    settle(sim, client)
    names = [(f.event_name, f.event.get("Channel-Name")) for f in client.events
             if f.event_name in ("CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE")]
    assert ("CHANNEL_ANSWER", "loopback/9000-a") in names
    assert names[-1] == ("CHANNEL_HANGUP_COMPLETE", "loopback/9000-a")
    rec = sim.originates()[0]
    assert (rec.answered, rec.state, rec.cause) == (True, "hungup", "NORMAL_CLEARING")
    assert Outcome.from_dict({"kind": "answer", "cleared_at_answer": True}) == Outcome.cleared()
    with pytest.raises(ValueError):
        Outcome.from_dict({"kind": "busy", "cleared_at_answer": True})


# --- 6. switch times: 20 ms steps, behind the wall clock -------------------------------------

def test_timestamps_step_and_lag(sim, client):
    sim.default_outcome = Outcome.answer(ring_ms=30, hold_ms=250)
    stamps = []
    sent = []
    for i in range(4):
        sent.append(time.time())
        client.api("originate {origination_uuid=t%d}null/%d 8800 XML default" % (i, i))
        time.sleep(0.013)
    settle(sim, client, 4)
    events = [f.event for f in client.drain_events() if f.event_name.startswith("CHANNEL_")]
    for e in events:
        stamps.append(int(e["Event-Date-Timestamp"]))
        for name in ("Caller-Channel-Created-Time", "Caller-Channel-Answered-Time", "Caller-Channel-Hangup-Time",
                     "variable_start_uepoch", "variable_answer_uepoch", "variable_end_uepoch"):
            if e.get(name, "0") != "0":
                stamps.append(int(e[name]))
    phase = stamps[0] % 20_000
    assert all(s % 20_000 == phase for s in stamps)
    creates = [int(e["Event-Date-Timestamp"]) for e in events if e["Event-Name"] == "CHANNEL_CREATE"]
    for t, stamp in zip(sent, creates):
        assert t * 1e6 - 60_000 < stamp < t * 1e6 + 5_000     # earlier than the send, by up to ~40 ms
    assert any(stamp < t * 1e6 for t, stamp in zip(sent, creates))
    hangup = [e for e in events if e["Event-Name"] == "CHANNEL_HANGUP_COMPLETE"][0]
    assert int(hangup["variable_end_uepoch"]) - int(hangup["variable_answer_uepoch"]) == int(
        hangup["variable_billusec"])


def test_exact_clock_when_asked():
    sim = FreeSwitchSimulator(clock_tick_ms=0, clock_lag_ms=0)
    sim.start_in_thread()
    try:
        c = connect(sim, "CHANNEL_CREATE")
        sent = time.time()
        c.api("originate null/1 &park()")
        assert int(c.wait_event("CHANNEL_CREATE").event["Event-Date-Timestamp"]) >= int(sent * 1e6)
        c.close()
    finally:
        sim.stop_thread()


# --- 7. two-leg endpoints ------------------------------------------------------------------

def test_loopback_makes_two_legs_as_captured(sim, client):
    sim.script_number("1000", Outcome.answer(hold_ms=100))
    assert client.api("originate {origination_uuid=two}loopback/1000 8888 XML default") == "+OK two\n"
    b_uuid = [u for u, ch in sim._switch.channels.items() if u != "two"][0]
    assert client.api("uuid_exists %s" % b_uuid) == "true"
    assert list(sim.active_channels()) == ["two"]
    settle(sim, client)
    seen = [(f.event_name, f.event["Channel-Name"], f.event["Call-Direction"]) for f in client.drain_events()
            if f.event_name.startswith("CHANNEL_")]
    assert seen == [
        ("CHANNEL_CREATE", "loopback/1000-a", "outbound"), ("CHANNEL_CREATE", "loopback/1000-b", "inbound"),
        ("CHANNEL_ANSWER", "loopback/1000-a", "outbound"), ("CHANNEL_ANSWER", "loopback/1000-b", "inbound"),
        ("CHANNEL_HANGUP", "loopback/1000-b", "inbound"), ("CHANNEL_HANGUP", "loopback/1000-a", "outbound"),
        ("CHANNEL_HANGUP_COMPLETE", "loopback/1000-b", "inbound"),
        ("CHANNEL_HANGUP_COMPLETE", "loopback/1000-a", "outbound")]
    assert sim.max_concurrent == 1 and "peak 2" in client.api("status")


def test_a_stalled_call_waits_for_the_originate_timeout(sim, client):
    sim.script_gateway("slow", Outcome.stalled())
    started = time.monotonic()
    job = client.bgapi("originate {origination_uuid=st,originate_timeout=1,originate_retries=3}"
                       "sofia/gateway/slow/1 &park()")
    client.wait_event("CHANNEL_CREATE")
    with pytest.raises(Exception):
        client.wait_job(job, timeout=0.8)
    assert client.wait_job(job, timeout=2).event_body == "-ERR NO_ANSWER\n"
    assert 0.95 <= time.monotonic() - started < 2.5
    assert len(sim.originates()) == 1             # a timed-out originate is not tried again


def test_ringing_longer_than_the_timeout_is_no_answer(sim, client):
    sim.default_outcome = Outcome.answer(ring_ms=5000)
    assert client.api("originate {originate_timeout=1}sofia/gateway/gw/1 &park()", timeout=3) == "-ERR NO_ANSWER\n"


# --- 8. originate_retries: the same destination rung again, same uuid ----------------------

@pytest.mark.parametrize("outcome, retries, rings", [
    (Outcome.busy(), "2", 2),           # "a busy number twice"
    (Outcome.no_answer(), "3", 3),      # "a no-answer number three times"
    (Outcome.busy(), "0", 1),           # outside 1..100: ignored
    (Outcome.busy(), "101", 1),
    (Outcome.busy(), "no", 1),
])
def test_originate_retries_is_the_number_of_tries(sim, client, outcome, retries, rings):
    sim.default_outcome = outcome
    job = client.bgapi("originate {origination_uuid=rr,originate_retries=%s,originate_retry_sleep_ms=500}"
                       "sofia/gateway/gw/77 &park()" % retries)
    assert client.wait_job(job, timeout=5).event_body == "-ERR %s\n" % outcome.cause
    settle(sim, client)
    recs = sim.originates()
    assert [(r.uuid, r.attempt, r.job_uuid, r.number) for r in recs] == [
        ("rr", n + 1, job, "77") for n in range(rings)]
    creates = [f for f in client.drain_events() if f.event_name == "CHANNEL_CREATE"]
    assert [f.event["Unique-ID"] for f in creates] == ["rr"] * rings
    if rings > 1:
        assert recs[1].ts - recs[0].ts >= 0.49          # originate_retry_sleep_ms apart


def test_a_retry_can_be_answered(sim, client):
    sim.script_number("88", Outcome.busy())
    job = client.bgapi("originate {origination_uuid=ra,originate_retries=3,originate_retry_sleep_ms=500}"
                       "sofia/gateway/gw/88 &park()")
    wait_until(lambda: sim.originates() and sim.originates()[0].state == "hungup")
    sim.script_number("88", Outcome.answer(hold_ms=None))
    assert client.wait_job(job, timeout=3).event_body == "+OK ra\n"
    assert [(r.attempt, r.state) for r in sim.originates()] == [(1, "hungup"), (2, "answered")]


# --- 9. Hangup-Cause twice in CHANNEL_HANGUP_COMPLETE ----------------------------------------

def test_hangup_cause_is_repeated_where_captured(sim, client):
    sim.default_outcome = Outcome.busy()
    client.api("originate sofia/gateway/gw/1 &park()")
    settle(sim, client)
    frames = {f.event_name: f for f in client.drain_events()}
    names = [n for n, _ in event_headers(frames["CHANNEL_HANGUP_COMPLETE"])]
    assert [i for i, n in enumerate(names) if n == "Hangup-Cause"] == [
        names.index("Event-Sequence") + 1, names.index("Answer-State") + 1]
    names = [n for n, _ in event_headers(frames["CHANNEL_HANGUP"])]
    assert names.count("Hangup-Cause") == 1 and names.index("Hangup-Cause") == names.index("Answer-State") + 1


# --- 10. a value holding "${" is not set ----------------------------------------------------

def test_variables_holding_a_variable_are_not_set(sim, client):
    client.api("originate {origination_uuid=vv,x_bad=${hack},x_good=ok,x_also=a${b}}sofia/gateway/gw/1 &park()")
    settle(sim, client)
    create = [f.event for f in client.drain_events() if f.event_name == "CHANNEL_CREATE"][0]
    assert create["variable_x_good"] == "ok"
    assert "variable_x_bad" not in create and "variable_x_also" not in create
    rec = sim.originates()[0]
    assert rec.variables == {"origination_uuid": "vv", "x_good": "ok"}
    assert rec.refused_variables == {"x_bad": "${hack}", "x_also": "a${b}"}
