"""The event socket protocol, byte for byte, over plain sockets."""
import json
import random
import socket

import pytest

from cti_dialer.fsim import Outcome
from cti_dialer.fsim.wire import DISCONNECT_NOTICE

from tests.conftest import wait_for as wait_until  # noqa: E402
from tests.fsim.esl_client import EslTestClient, parse_event_plain

pytestmark = pytest.mark.fsim

OK_ACCEPTED = b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"


def connect(sim, password="ClueCon"):
    c = EslTestClient("127.0.0.1", sim.port)
    if password is not None:
        assert c.auth(password).raw == OK_ACCEPTED
    return c


@pytest.fixture
def client(sim):
    c = connect(sim)
    yield c
    c.close()


def sync(c):
    """A round trip: every event queued before it has arrived once it returns."""
    assert c.api("uuid_exists sync") == "false"


# --- connection setup ----------------------------------------------------------------

def test_greeting_and_auth_bytes(sim):
    c = EslTestClient("127.0.0.1", sim.port)
    assert c.greeting.raw == b"Content-Type: auth/request\n\n"
    assert c.auth("ClueCon").raw == OK_ACCEPTED
    c.close()


def test_wrong_password_gets_error_notice_and_close(sim):
    c = EslTestClient("127.0.0.1", sim.port)
    # The command after the failed auth must never run.
    c.send_raw(b"auth wrong\n\napi hupall\n\n")
    assert c.read_until_closed() == (b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n"
                                     + DISCONNECT_NOTICE)
    assert [r.raw for r in sim.commands()] == ["auth ****"]
    wait_until(lambda: sim.connections() == 0)


def test_commands_before_auth_are_refused_but_connection_stays(sim):
    c = EslTestClient("127.0.0.1", sim.port)
    frame = c.command("api status")
    assert frame.raw == b"Content-Type: command/reply\nReply-Text: -ERR command not found\n\n"
    assert c.command("event plain ALL").reply_text == "-ERR command not found"
    assert c.auth().raw == OK_ACCEPTED
    assert c.api("status").startswith("UP ")
    c.close()


@pytest.mark.parametrize("authed", [True, False])
def test_exit_says_bye_then_notice_then_closes(sim, authed):
    c = connect(sim) if authed else EslTestClient("127.0.0.1", sim.port)
    c.send_raw(b"exit\n\napi status\n\n")
    assert c.read_until_closed() == (b"Content-Type: command/reply\nReply-Text: +OK bye\n\n"
                                     + DISCONNECT_NOTICE)


def test_unknown_command(client):
    assert client.command("frobnicate now").raw == (
        b"Content-Type: command/reply\nReply-Text: -ERR command not found\n\n")


# --- framing -----------------------------------------------------------------------------

def test_several_commands_in_one_write(client):
    client.send_raw(b"api uuid_exists nope\n\napi nosuch\n\nnonsense\n\nbgapi uuid_exists x\nJob-UUID: j-1\n\n")
    assert client.reply().text == "false"
    assert client.reply().text == "-ERR nosuch Command not found!\n"
    assert client.reply().reply_text == "-ERR command not found"
    assert client.reply().raw == (b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: j-1\n"
                                  b"Job-UUID: j-1\n\n")


def test_one_command_over_many_writes(sim, client):
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = b"api uuid_exists split-uuid\r\n\r\n"
    for i in range(len(data)):
        client.send_raw(data[i:i + 1])
    assert client.reply().text == "false"
    assert sim.commands()[-1].raw == "api uuid_exists split-uuid"


def test_crlf_and_leading_blank_lines(sim):
    c = EslTestClient("127.0.0.1", sim.port)
    c.send_raw(b"\r\n\r\nauth ClueCon\r\n\r\n")
    assert c.reply().raw == OK_ACCEPTED
    c.send_raw(b"\n\napi uuid_exists x\r\n\r\n")
    assert c.reply().text == "false"
    assert [r.raw for r in sim.commands()] == ["auth ****", "api uuid_exists x"]
    c.close()


def test_api_content_length_counts_bytes(client):
    frame = client.command("api ñandú")
    body = "-ERR ñandú Command not found!\n".encode("utf-8")
    assert frame.raw == b"Content-Type: api/response\nContent-Length: %d\n\n" % len(body) + body
    assert len(body) != len(body.decode("utf-8"))


# --- events ----------------------------------------------------------------------------------

def test_event_subscription_replies(client):
    assert client.command("event plain CHANNEL_ANSWER BACKGROUND_JOB").raw == (
        b"Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n")
    assert client.command("event plain").reply_text == "-ERR no keywords supplied"
    assert client.command("event plain NOT_AN_EVENT").reply_text == "-ERR no keywords supplied"
    assert client.command("noevents").reply_text == "+OK no longer listening for events"
    assert client.command("noevents").reply_text == "-ERR not listening for events"
    assert client.command("event json ALL").reply_text == "+OK event listener enabled json"


def test_events_go_only_to_subscribers(sim):
    answers, jobs, quiet = connect(sim), connect(sim), connect(sim)
    answers.subscribe("CHANNEL_ANSWER")
    jobs.subscribe("BACKGROUND_JOB")
    job = quiet.bgapi("originate sofia/gateway/gw1/100 &park()")
    assert jobs.wait_job(job).event_body.startswith("+OK ")
    assert answers.wait_event("CHANNEL_ANSWER").event["Caller-Destination-Number"] == "100"
    wait_until(lambda: sim.originates()[0].state == "hungup")
    for c in (answers, jobs, quiet):
        sync(c)
    assert answers.drain_events() == [] and jobs.drain_events() == [] and quiet.drain_events() == []
    for c in (answers, jobs, quiet):
        c.close()


def test_noevents_and_nixevent_stop_delivery(sim, client):
    client.subscribe("ALL")
    assert client.command("nixevent CHANNEL_CREATE CHANNEL_HANGUP").reply_text == "+OK events nixed"
    client.api("originate sofia/gateway/gw/1 &park()")
    wait_until(lambda: sim.originates()[0].state == "hungup")
    sync(client)
    names = [f.event_name for f in client.drain_events()]
    assert names == ["CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE"]
    client.command("noevents")
    client.api("originate sofia/gateway/gw/2 &park()")
    wait_until(lambda: sim.originates()[1].state == "hungup")
    sync(client)
    assert client.drain_events() == []


def test_header_values_are_url_encoded_so_they_cannot_forge_headers(sim, client):
    client.subscribe("CHANNEL_ANSWER")
    # \n inside the quoted argument becomes a real newline, as in FreeSWITCH.
    name = r"'Evil Name\nHangup-Cause: FORGED'"
    uuid = client.api("originate {origination_caller_id_name=%s}sofia/gateway/gw/5 &park()" % name)
    frame = client.wait_event("CHANNEL_ANSWER")
    lines = frame.body.split(b"\n")
    assert b"Caller-Caller-ID-Name: Evil%20Name%0AHangup-Cause%3A%20FORGED" in lines
    assert b"variable_origination_caller_id_name: Evil%20Name%0AHangup-Cause%3A%20FORGED" in lines
    assert not any(line.startswith(b"Hangup-Cause") for line in lines)
    assert frame.event["Caller-Caller-ID-Name"] == "Evil Name\nHangup-Cause: FORGED"
    assert frame.event["Unique-ID"] == uuid.split()[1]


def test_event_plain_framing_of_a_channel_event(client):
    client.subscribe("CHANNEL_HANGUP_COMPLETE")
    client.api("originate {origination_uuid=aaaa-1}sofia/gateway/gw/7 &park()")
    frame = client.wait_event("CHANNEL_HANGUP_COMPLETE")
    assert frame.raw.startswith(b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(frame.body))
    assert frame.body.startswith(b"Event-Name: CHANNEL_HANGUP_COMPLETE\nCore-UUID: ")
    assert frame.body.endswith(b"\n\n")
    ev = frame.event
    for header in ("Core-UUID", "FreeSWITCH-Hostname", "Event-Date-Timestamp", "Event-Sequence",
                   "Channel-Call-UUID", "Answer-State", "variable_start_epoch", "variable_answer_epoch",
                   "variable_end_epoch", "variable_answersec"):
        assert ev.get(header), header
    assert ev["Unique-ID"] == "aaaa-1" and ev["variable_origination_uuid"] == "aaaa-1"
    assert ev["Hangup-Cause"] == "NORMAL_CLEARING" and ev["variable_billsec"] == "0"
    assert ev["Caller-Destination-Number"] == "7" and ev["variable_sip_gateway_name"] == "gw"


def test_bgapi_with_client_job_uuid(client):
    client.subscribe("BACKGROUND_JOB")
    arg = "{origination_uuid=chan-1}sofia/gateway/gw1/2001 &park()"
    frame = client.command("bgapi originate %s\nJob-UUID: my-job-0001" % arg)
    assert frame.raw == (b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: my-job-0001\n"
                         b"Job-UUID: my-job-0001\n\n")
    event = client.wait_job("my-job-0001")
    assert event.event["Job-Command"] == "originate"
    assert event.event["Job-Command-Arg"] == arg
    assert event.event_body == "+OK chan-1\n"
    assert event.body.endswith(b"Job-Command-Arg: %7Borigination_uuid%3Dchan-1%7Dsofia/gateway/gw1/2001"
                               b"%20%26park()\nContent-Length: 11\n\n+OK chan-1\n")


def test_bgapi_of_other_commands_and_generated_job_uuid(client):
    client.subscribe("BACKGROUND_JOB")
    frame = client.command("bgapi status")
    job = frame.headers["Job-UUID"]
    assert frame.reply_text == "+OK Job-UUID: " + job and len(job) == 36
    event = client.wait_job(job)
    assert event.event_body.startswith("UP ") and "Job-Command-Arg" not in event.event
    job = client.bgapi("nosuchcommand arg")
    assert client.wait_job(job).event_body == "-ERR nosuchcommand Command not found!\n"


def test_json_events(client):
    client.command("event json BACKGROUND_JOB")
    job = client.bgapi("uuid_exists x")
    frame = client.read_frame()
    assert frame.content_type == "text/event-json"
    data = json.loads(frame.body)
    assert data["Job-UUID"] == job and data["_body"] == "false"


def test_filter_limits_events_to_matching_header(sim, client):
    client.subscribe("CHANNEL_ANSWER")
    assert client.command("filter Unique-ID keep-me").reply_text == "+OK filter added. [Unique-ID]=[keep-me]"
    client.api("originate {origination_uuid=drop-me}sofia/gateway/gw/1 &park()")
    client.api("originate {origination_uuid=keep-me}sofia/gateway/gw/2 &park()")
    sync(client)
    assert [f.event["Unique-ID"] for f in client.drain_events()] == ["keep-me"]
    assert client.command("filter delete all").reply_text.startswith("+OK filter deleted.")


# --- robustness ----------------------------------------------------------------------------

def test_hostile_bytes_never_crash_the_server(sim):
    rng = random.Random(1234)
    c = connect(sim)
    pieces = [b"\x00", b"\xff\xfe", b"\n\n", b"\r\n", b"api ", b"bgapi ", b"Content-Length: 3\n",
              b"Content-Length: -5\n", b"Content-Length: 999999999999\n", b"event plain ",
              b"{", b"}", b"[", b"'", b"\\", b"originate ", b"uuid_kill ", b"%0A", "ü".encode()]
    for _ in range(300):
        c.send_raw(b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 12))))
    # A body announced by a Content-Length may swallow what follows; close it off.
    c.send_raw(b"x" * 64 + b"\n\n")
    c.close()
    fresh = connect(sim)
    assert fresh.api("uuid_exists x") == "false"
    assert fresh.api("originate") == ("-USAGE: <call url> <exten>|&<application_name>(<app_args>) "
                                      "[<dialplan>] [<context>] [<cid_name>] [<cid_num>] [<timeout_sec>]\n")
    fresh.close()


def test_a_header_line_cannot_smuggle_a_second_command(sim, client):
    sim.default_outcome = Outcome.answer(hold_ms=None)
    uuid = client.api("originate sofia/gateway/gw/1 &park()").split()[1]
    # The newline makes "api hupall" a header of the first command, not a command.
    client.send_raw(b"api uuid_exists %s\napi hupall\n\n" % uuid.encode())
    assert client.reply().text == "true"
    sync(client)
    assert [r.raw.split("\n")[0] for r in sim.commands()].count("api hupall") == 0
    assert uuid in sim.active_channels()


def test_huge_command_is_cut_off_and_answered(sim, client):
    client.send_raw(b"api " + b"a" * 200000 + b"\n\n")
    assert client.reply().text.startswith("-ERR aaaa")
    assert parse_event_plain(b"X: 1\n\n") == ({"X": "1"}, "")


def test_a_command_the_clients_permissions_do_not_allow_is_refused_and_never_run(sim, client):
    sim.denied_commands = frozenset({"originate"})
    reply = client.command("bgapi originate {origination_uuid=den}null/1 8800 XML default\nJob-UUID: den")
    assert reply.raw == b"Content-Type: command/reply\nReply-Text: -ERR permission denied\n\n"
    assert sim.originates() == []
    sim.denied_commands = frozenset()
    assert client.command("bgapi originate {origination_uuid=ok1}null/1 8800 XML default").raw.startswith(
        b"Content-Type: command/reply\nReply-Text: +OK Job-UUID:")
