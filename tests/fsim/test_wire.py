"""Byte-level helpers and the originate parser, without sockets."""
import json

import pytest

from cti_dialer.fsim import Outcome
from cti_dialer.fsim.originate import (ORIGINATE_USAGE, OriginateError, cleanup_token,
                                       parse_dialstring, parse_originate, separate_string)
from cti_dialer.fsim.wire import (DISCONNECT_NOTICE, CommandReader, api_response, event_json,
                                  event_plain, url_encode)

from tests.fsim.esl_client import parse_event_plain

pytestmark = pytest.mark.fsim


# --- URL encoding --------------------------------------------------------------

@pytest.mark.parametrize("value, encoded", [
    ("plain-value_1.2~", "plain-value_1.2~"),
    ("John Smith", "John%20Smith"),
    ("a:b", "a%3Ab"),
    ("line1\nEvil-Header: x", "line1%0AEvil-Header%3A%20x"),
    ("cr\r", "cr%0D"),
    ("é", "%C3%A9"),
    ("100%", "100%25"),
    ("%41 kept", "%41%20kept"),           # an existing upper-case escape is not encoded twice
    ("%4a lower", "%254a%20lower"),       # lower-case hex is not an escape to FreeSWITCH
    ("#&+;<=>?@[\\]^`{|}\"", "%23%26%2B%3B%3C%3D%3E%3F%40%5B%5C%5D%5E%60%7B%7C%7D%22"),
    ("del\x7f", "del%7F"),
])
def test_url_encode_matches_freeswitch(value, encoded):
    assert url_encode(value) == encoded


def test_event_plain_layout_and_byte_lengths():
    frame = event_plain([("Event-Name", "BACKGROUND_JOB"), ("Job-UUID", "j1"), ("Empty", "")],
                        "+OK é\n")
    head, _, payload = frame.partition(b"\n\n")
    assert head == b"Content-Length: %d\nContent-Type: text/event-plain" % len(payload)
    # The body's own Content-Length follows the last header directly and counts bytes.
    assert payload == (b"Event-Name: BACKGROUND_JOB\nJob-UUID: j1\nEmpty: _undef_\n"
                       b"Content-Length: 7\n\n+OK \xc3\xa9\n")
    headers, body = parse_event_plain(payload)
    assert headers["Job-UUID"] == "j1" and body == "+OK é\n"


def test_event_plain_without_body_ends_with_blank_line():
    frame = event_plain([("Event-Name", "CHANNEL_ANSWER"), ("Caller-Caller-ID-Name", "A B\nX: y")])
    payload = frame.partition(b"\n\n")[2]
    assert payload == b"Event-Name: CHANNEL_ANSWER\nCaller-Caller-ID-Name: A%20B%0AX%3A%20y\n\n"


def test_event_json():
    frame = event_json([("Event-Name", "BACKGROUND_JOB"), ("Job-UUID", "j")], "-ERR X\n")
    head, _, payload = frame.partition(b"\n\n")
    assert head == b"Content-Length: %d\nContent-Type: text/event-json" % len(payload)
    assert json.loads(payload) == {"Event-Name": "BACKGROUND_JOB", "Job-UUID": "j",
                                   "Content-Length": "7", "_body": "-ERR X\n"}


def test_api_response_counts_bytes():
    assert api_response("ü\n") == b"Content-Type: api/response\nContent-Length: 3\n\n\xc3\xbc\n"
    assert api_response("") == b"Content-Type: api/response\nContent-Length: 14\n\n-ERR no reply\n"


def test_disconnect_notice_bytes():
    assert DISCONNECT_NOTICE == (b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\n"
                                 b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n")


# --- command framing -----------------------------------------------------------

def test_reader_splits_several_commands_in_one_chunk():
    cmds = CommandReader().feed(b"auth x\n\napi status\n\nbgapi status\nJob-UUID: j\n\n")
    assert [c.line for c in cmds] == ["auth x", "api status", "bgapi status"]
    assert cmds[2].headers == {"job-uuid": "j"} and cmds[2].raw == "bgapi status\nJob-UUID: j"


def test_reader_joins_a_command_split_byte_by_byte():
    reader = CommandReader()
    data = b"\r\n\napi uuid_exists abc\r\nJob-UUID: x\r\n\r\n"
    out = []
    for i in range(len(data)):
        out += reader.feed(data[i:i + 1])
    assert len(out) == 1
    assert out[0].line == "api uuid_exists abc" and out[0].headers["job-uuid"] == "x"


def test_reader_reads_a_content_length_body():
    reader = CommandReader()
    assert reader.feed(b"sendevent CUSTOM\nContent-Length: 5\n\nab") == []
    cmds = reader.feed(b"cdeapi status\n\n")
    assert [(c.line, c.body) for c in cmds] == [("sendevent CUSTOM", "abcde"), ("api status", "")]


def test_reader_survives_garbage():
    reader = CommandReader(max_bytes=64)
    cmds = reader.feed(b"\xff\xfe\x00junk\nContent-Length: nope\n\n" + b"x" * 100)
    assert cmds[0].line.endswith("junk")
    assert len(cmds) == 2 and cmds[1].line == "x" * 100   # over the limit: cut off like read_packet


# --- argument splitting ----------------------------------------------------------

def test_separate_string_blank_delimiter_quotes_and_escapes():
    # The blank splitter skips the character after a backslash, but its
    # cleanup knows no delimiter, so "\\ " keeps its backslash.
    assert separate_string("  a   'b c'  d\\ e ", " ") == ["a", "b c", "d\\ e"]
    assert separate_string("x 'it''s'", " ") == ["x", "its"]
    # Every quote toggles there, even one that is never closed.
    assert separate_string("a 'b c", " ") == ["a", "'b c"]
    assert separate_string("{n='John Smith'}u/1 park", " ") == ["{n=John Smith}u/1", "park"]


def test_separate_string_keeps_escaped_delimiter_and_limit():
    assert separate_string(r"a=1,b=pcma\,pcmu,c", ",") == ["a=1", "b=pcma,pcmu", "c"]
    assert separate_string("k=v=w", "=", limit=2) == ["k", "v=w"]
    assert separate_string("a,,b,", ",") == ["a", "", "b"]
    assert separate_string("^^;a=1,2;b=3", ",") == ["a=1,2", "b=3"]


def test_cleanup_unescapes_like_freeswitch():
    assert cleanup_token(r"John\sSmith\n", " ") == "John Smith\n"
    assert cleanup_token(r"keep\x", " ") == r"keep\x"
    assert cleanup_token("lone ' quote ", " ") == "lone ' quote"


# --- originate parsing -------------------------------------------------------------

def test_parse_originate_full_command():
    args = parse_originate(
        r"{origination_uuid=u-1,absolute_codec_string=pcma\,pcmu,ignore_early_media=true}"
        r"[leg_timeout=20,sip_h_X-Tag=a\,b]sofia/gateway/gw1/9013800138000 &park() XML default "
        r"'Acme Corp' 02100 45")
    assert args.dial.variables == {
        "origination_uuid": "u-1", "absolute_codec_string": "pcma,pcmu",
        "ignore_early_media": "true", "leg_timeout": "20", "sip_h_X-Tag": "a,b"}
    assert (args.dial.endpoint, args.dial.number, args.dial.gateway) == ("gw1", "9013800138000", True)
    assert (args.extension, args.dialplan, args.context) == ("&park()", "XML", "default")
    assert (args.cid_name, args.cid_num, args.timeout) == ("Acme Corp", "02100", 45)
    assert not args.dial.multi_destination


def test_leg_variables_override_global_ones():
    dial = parse_dialstring("{a=1,b=2}[b=3]user/1000")
    assert dial.variables == {"a": "1", "b": "3"}
    assert (dial.endpoint, dial.number, dial.gateway) == ("user", "1000", False)


def test_defaults_and_other_endpoints():
    args = parse_originate("sofia/internal/1001@10.0.0.1 1000")
    assert (args.dialplan, args.context, args.timeout) == ("XML", "default", 60)
    assert (args.dial.endpoint, args.dial.number) == ("sofia/internal", "1001@10.0.0.1")


@pytest.mark.parametrize("dialstring, multi", [
    ("sofia/gateway/a/1", False),
    ("sofia/gateway/a/1,sofia/gateway/b/1", True),
    ("sofia/gateway/a/1|sofia/gateway/b/1", True),
    ("{x=1\\,2}sofia/gateway/a/1", False),
    ("[x=1,y=2]sofia/gateway/a/1", False),
    ("sofia/gateway/a/1\\,2", False),
    ("user/1:_:user/2", True),
])
def test_multi_destination_detection(dialstring, multi):
    assert parse_dialstring(dialstring).multi_destination is multi


@pytest.mark.parametrize("arg", [None, "", "only-one", "a b c d e f g h"])
def test_usage_errors(arg):
    with pytest.raises(OriginateError) as info:
        parse_originate(arg)
    assert info.value.result == ORIGINATE_USAGE


def test_unbalanced_brace_is_an_error():
    with pytest.raises(OriginateError) as info:
        parse_originate("{a=1 sofia/gateway/gw/1 &park()")
    assert info.value.result == "-ERR INVALID_NUMBER_FORMAT\n"


# --- outcomes ----------------------------------------------------------------------

def outcome_to_dict(outcome):
    """The JSON form ``Outcome.from_dict`` reads (a CLI script's outcome)."""
    d = {"kind": outcome.kind, "ring_ms": outcome.ring_ms}
    if outcome.kind == "answer":
        d["hold_ms"] = outcome.hold_ms
    if outcome.kind in ("hangup", "fail"):
        d["cause"] = outcome.cause
    if outcome.kind == "fail":
        d["channel"] = outcome.channel
    return d


def test_outcome_factories_and_round_trip():
    cases = [Outcome.answer(ring_ms=10, hold_ms=2000), Outcome.answer(hold_ms=None), Outcome.busy(5),
             Outcome.no_answer(), Outcome.reject(), Outcome.hangup("NORMAL_TEMPORARY_FAILURE", 3),
             Outcome.fail("GATEWAY_DOWN"), Outcome.fail("NO_ROUTE_DESTINATION", channel=True)]
    for outcome in cases:
        assert Outcome.from_dict(json.loads(json.dumps(outcome_to_dict(outcome)))) == outcome
    assert Outcome.busy().cause == "USER_BUSY" and Outcome.no_answer().cause == "NO_ANSWER"
    assert Outcome.reject().cause == "CALL_REJECTED"
    assert Outcome.fail("GATEWAY_DOWN").channel is False


@pytest.mark.parametrize("bad", [
    {"kind": "explode"}, {"kind": "fail"}, {"kind": "fail", "cause": "TWO WORDS"},
    {"kind": "answer", "ring_ms": -1}, {"kind": "busy", "colour": "red"},
    {"kind": "fail", "cause": "X", "channel": "yes"}, "answer",
])
def test_outcome_from_dict_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        Outcome.from_dict(bad)


def test_outcome_is_frozen():
    with pytest.raises(Exception):
        Outcome.busy().cause = "X"
