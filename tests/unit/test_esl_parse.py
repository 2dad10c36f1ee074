import pytest

from cti_dialer.esl import Answered, HungUp, JobResult, SwitchShutdown, parse_event_plain, to_typed

pytestmark = pytest.mark.unit


def test_background_job_body_is_separated():
    data = (b"Event-Name: BACKGROUND_JOB\nJob-UUID: 11111111-2222-3333-4444-555555555555\n"
            b"Job-Command: originate\nContent-Length: 41\n\n+OK 6f4f3a0e-0000-0000-0000-000000000000\n")
    headers, body = parse_event_plain(data)
    assert headers["Job-UUID"] == "11111111-2222-3333-4444-555555555555"
    assert body == "+OK 6f4f3a0e-0000-0000-0000-000000000000\n"
    assert to_typed(headers, body) == JobResult("11111111-2222-3333-4444-555555555555", body)


def test_encoded_newline_cannot_forge_a_header():
    data = (b"Event-Name: CHANNEL_HANGUP_COMPLETE\nUnique-ID: real\nHangup-Cause: USER_BUSY\n"
            b"Caller-Caller-ID-Name: x%0AUnique-ID%3A%20forged%0AHangup-Cause%3A%20NORMAL_CLEARING\n"
            b"variable_billsec: 0\n\n")
    headers, _ = parse_event_plain(data, wanted=None)
    assert headers["Unique-ID"] == "real"
    assert headers["Hangup-Cause"] == "USER_BUSY"
    assert headers["Caller-Caller-ID-Name"] == "x\nUnique-ID: forged\nHangup-Cause: NORMAL_CLEARING"
    assert "Caller-Caller-ID-Name" not in parse_event_plain(data)[0]      # not read unless wanted


def test_first_header_wins():
    headers, _ = parse_event_plain(b"Unique-ID: a\nUnique-ID: b\n\n")
    assert headers["Unique-ID"] == "a"


def test_hangup_typed():
    headers = {"Event-Name": "CHANNEL_HANGUP_COMPLETE", "Unique-ID": "u", "Hangup-Cause": "NORMAL_CLEARING",
               "variable_billsec": "12", "Event-Date-Timestamp": "1700000000123456"}
    event = to_typed(headers, "")
    assert isinstance(event, HungUp)
    assert (event.uuid, event.cause, event.billsec, event.answered) == ("u", "NORMAL_CLEARING", 12, True)
    assert event.ts == pytest.approx(1700000000.123456)


def test_answer_typed_and_foreign_events_ignored():
    assert isinstance(to_typed({"Event-Name": "CHANNEL_ANSWER", "Unique-ID": "u"}, ""), Answered)
    assert to_typed({"Event-Name": "HEARTBEAT"}, "") is None
    assert to_typed({"Event-Name": "CHANNEL_ANSWER"}, "") is None


def _hangup(extra):
    head = ("Event-Name: CHANNEL_HANGUP_COMPLETE\nUnique-ID: u1\nHangup-Cause: NO_ANSWER\n"
            "variable_billsec: 0\nvariable_start_uepoch: 1796027469273566\nvariable_answer_uepoch: 0\n"
            "variable_end_uepoch: 1796027470273566\n" + extra)
    return to_typed(*parse_event_plain(head.encode()))


def test_hangup_carries_the_switchs_own_times():
    event = _hangup("Channel-Name: sofia/gateway/gw/1\n")
    assert event.started == 1796027469.273566 and event.ended == 1796027470.273566
    assert event.answered_at is None and not event.second_leg_missing


def test_a_loopback_first_leg_without_its_second_never_rang():
    assert _hangup("Channel-Name: loopback/9000-a\n").second_leg_missing
    both = _hangup("Channel-Name: loopback/9000-a\nvariable_other_loopback_leg_uuid: b1\n")
    assert not both.second_leg_missing


def test_shutdown_is_its_own_event():
    assert isinstance(to_typed(*parse_event_plain(b"Event-Name: SHUTDOWN\nEvent-Info: System%20Shutting%20Down\n")),
                      SwitchShutdown)
