import dataclasses
import json

import orjson
import pytest

from cti_dialer import keys, messages, model
from cti_dialer.messages import BadMessage, ConfigChange, HostStatus, TaskStatus

pytestmark = pytest.mark.unit


# --- config_change -------------------------------------------------------------------

GOOD = [
    ('{"type":"config_change","table":"cti_queue_dialer_task","key":"t1"}', (keys.TASK_TABLE, "t1")),
    (b'{"type":"config_change","table":"cti_line","key":"gw1"}', (keys.LINE_TABLE, "gw1")),
    (b'{"type":"config_change","table":"cti_line_group"}', (keys.GROUP_TABLE, None)),
    ('{"type":"config_change","table":"cti_schedule_dialer_config","key":null}', (keys.SCHEDULE_CONFIG_TABLE, None)),
    # Fields beyond the three are ignored.
    ('{"type":"config_change","table":"cti_line","key":"gw1","by":"ops"}', (keys.LINE_TABLE, "gw1")),
    ('{"type":"config_change","table":"cti_line","key":"线路一"}'.encode(), (keys.LINE_TABLE, "线路一")),
]


@pytest.mark.parametrize("data, expected", GOOD)
def test_parse_config_change_accepts(data, expected):
    assert messages.parse_config_change(data) == ConfigChange(*expected)


BAD = [
    (b"", "input length is 0"),
    (b"{", "unexpected end of data"),
    (b"{not json", "unexpected character"),
    (b'"config_change"', "not a JSON object"),
    (b'["config_change"]', "not a JSON object"),
    (b"null", "not a JSON object"),
    (b'{"table":"cti_line"}', "type must be 'config_change', not None"),
    (b'{"type":"config","table":"cti_line"}', "type must be 'config_change', not 'config'"),
    (b'{"type":1,"table":"cti_line"}', "type must be 'config_change', not 1"),
    (b'{"type":"config_change","table":"cti_line","key":""}', "key must be a non-empty string when present"),
    (b'{"type":"config_change","table":"cti_line","key":7}', "key must be a non-empty string when present"),
    (b'{"type":"config_change","table":"cti_line","key":["a"]}', "key must be a non-empty string when present"),
    (b'{"type":"config_change","table":"cti_lines","key":"a"}', "unknown table 'cti_lines'"),
    (b'{"type":"config_change","key":"a"}', "unknown table None"),
    (b'{"type":"config_change","table":"cti_schedule_dialer_number"}', "unknown table 'cti_schedule_dialer_number'"),
    (b'{"type":"config_change","table":["cti_line"]}', "unknown table ['cti_line']"),
    # Several faults: the reason is the first in the daemon's order (type, key, table).
    (b'{"type":"x","table":"nope","key":""}', "type must be 'config_change', not 'x'"),
    (b'{"type":"config_change","table":"nope","key":""}', "key must be a non-empty string when present"),
]


@pytest.mark.parametrize("data, reason", BAD)
@pytest.mark.parametrize("as_str", [False, True], ids=["bytes", "str"])
def test_parse_config_change_rejects_with_the_reason(data, reason, as_str):
    with pytest.raises(BadMessage) as info:
        messages.parse_config_change(data.decode() if as_str else data)
    assert reason in str(info.value)
    assert isinstance(info.value, ValueError)


def test_parse_config_change_rejects_invalid_utf8():
    with pytest.raises(BadMessage, match="not valid UTF-8"):
        messages.parse_config_change(b'{"type":"config_change","table":"cti_line","key":"\xff"}')


@pytest.mark.parametrize("table", keys.CONFIG_TABLES)
@pytest.mark.parametrize("key", [None, "t1", "名字", "a,b"])
def test_config_change_round_trips(table, key):
    raw = messages.config_change(table, key)
    assert isinstance(raw, bytes)
    assert messages.parse_config_change(raw) == ConfigChange(table, key)
    expected = {"type": "config_change", "table": table}
    if key is not None:
        expected["key"] = key
    assert json.loads(raw) == expected


def test_config_change_matches_the_documented_example():
    assert messages.config_change(keys.TASK_TABLE, "test") == \
        b'{"type":"config_change","table":"cti_queue_dialer_task","key":"test"}'


@pytest.mark.parametrize("table, key, reason", [
    ("cti_nope", "a", "unknown table 'cti_nope'"),
    (keys.LINE_TABLE, "", "key must be a non-empty string"),
    (keys.LINE_TABLE, 5, "key must be a non-empty string"),
])
def test_config_change_refuses_what_a_daemon_would_reject(table, key, reason):
    with pytest.raises(BadMessage, match=reason):
        messages.config_change(table, key)


def test_a_key_longer_than_any_name_is_refused_with_a_short_reason():
    # MAX_KEY_CHARS is model.check_name's bound: the longest name it accepts.
    longest = "k" * messages.MAX_KEY_CHARS
    assert model.check_name(longest, "task") == longest
    with pytest.raises(model.ModelError):
        model.check_name(longest + "k", "task")
    assert messages.parse_config_change(messages.config_change(keys.TASK_TABLE, longest)).key == longest
    data = orjson.dumps({"type": "config_change", "table": keys.TASK_TABLE, "key": longest + "k"})
    with pytest.raises(BadMessage, match="key is 129 characters long; no name is longer than 128"):
        messages.parse_config_change(data)
    with pytest.raises(BadMessage):
        messages.config_change(keys.TASK_TABLE, longest + "k")


@pytest.mark.parametrize("field", ["key", "type", "table", "by"])
def test_a_huge_message_is_refused_unread_and_its_reason_is_short(field):
    msg = {"type": "config_change", "table": keys.TASK_TABLE, field: "x" * (512 * 1024)}
    with pytest.raises(BadMessage) as info:
        messages.parse_config_change(orjson.dumps(msg))
    assert str(info.value).startswith("message is 5243") and len(str(info.value)) < 100


@pytest.mark.parametrize("field", ["type", "table"])
def test_a_long_bad_value_is_quoted_short(field):
    data = orjson.dumps({"type": "config_change", "table": keys.TASK_TABLE, field: "y" * 10000})
    assert len(data) < messages.MAX_MESSAGE_BYTES
    with pytest.raises(BadMessage) as info:
        messages.parse_config_change(data)
    assert "characters)" in str(info.value) and len(str(info.value)) < 150


def C(table, key=None):
    return ConfigChange(table, key)


T, L, G = keys.TASK_TABLE, keys.LINE_TABLE, keys.GROUP_TABLE


@pytest.mark.parametrize("changes, expected", [
    ([], []),
    ([C(T, "a"), C(T, "b"), C(T, "a"), C(L, "a"), C(T, "b")], [C(T, "a"), C(T, "b"), C(L, "a")]),
    # A change without a key rereads everything: it covers the others, before and after it.
    ([C(T, "a"), C(L, "x"), C(G), C(T, "b"), C(T)], [C(G)]),
    ([C(t) for t in keys.CONFIG_TABLES] * 3, [C(T)]),
])
def test_coalesce(changes, expected):
    assert messages.coalesce(changes) == expected


def test_coalesce_turns_many_keys_of_a_table_into_one_whole_reread():
    many = [C(T, "t%d" % i) for i in range(messages.MAX_KEYS_PER_TABLE + 1)]
    lines = [C(L, "l%d" % i) for i in range(messages.MAX_KEYS_PER_TABLE)]
    assert messages.coalesce(many[:-1] + lines + many[:-1]) == many[:-1] + lines
    assert messages.coalesce(lines + many) == [C(T)]
    assert messages.coalesce(many, max_keys=1000) == many


@pytest.mark.parametrize("host, channel", [(None, "config@all"), ("", "config@all"), ("fs7", "config@fs7")])
def test_channel_for(host, channel):
    assert keys.Keys.channel_for(host) == channel


def test_channels_of_a_daemon():
    k = keys.Keys("fs1", "d")
    assert (k.channel_all, k.channel_host) == ("config@all", "config@fs1")
    assert (k.task_template, k.task_host) == ("cti_queue_dialer_task@template", "cti_queue_dialer_task@fs1")
    assert k.tasks_for(None) == k.task_template and k.tasks_for("fs2") == "cti_queue_dialer_task@fs2"


# --- status records ------------------------------------------------------------------

HOST = HostStatus(host="fs1", pid=4242, version="1.2.3", started_at=1700000000.123456, heartbeat=1700000123.5,
                  state="running", esl="connected", active_calls=3, pending_writes=0, tracked_claims=3,
                  tracked_uuids=3, rss_kb=51234)

TASK = TaskStatus(state="waiting", reason="outside work_hour", active=2, limit=10, queue="queue:sales", queued=17,
                  redials_pending=1, dialed=40, answered=30, failed=10, rejected=1, last_error="",
                  counters="cti_dialer_counter@d:sales", updated=1700000123.25)


def redis_hash(mapping):
    """What HGETALL returns for a hash written with this mapping."""
    return {k.encode(): v.encode() for k, v in mapping.items()}


def test_host_status_round_trip():
    fields = messages.encode_host_status(HOST)
    assert all(isinstance(v, str) for v in fields.values())
    assert messages.decode_host_status(redis_hash(fields)) == HOST
    assert messages.decode_host_status(fields) == HOST      # a decode_responses client


def test_host_status_is_written_as_it_always_was():
    fields = messages.encode_host_status(HOST)
    assert fields == {"host": "fs1", "pid": "4242", "version": "1.2.3", "started_at": "1700000000.123456",
                      "heartbeat": "1700000123.5", "state": "running", "esl": "connected", "active_calls": "3",
                      "pending_writes": "0", "tracked_claims": "3", "tracked_uuids": "3", "rss_kb": "51234"}


def test_host_status_ignores_fields_it_does_not_know():
    fields = redis_hash(dict(messages.encode_host_status(HOST), future="x"))
    assert messages.decode_host_status(fields) == HOST


@pytest.mark.parametrize("change, reason", [
    ({"pid": None}, "no field 'pid'"),
    ({"heartbeat": "soon"}, "heartbeat = 'soon' is not float"),
    ({"active_calls": "2.5"}, "active_calls = '2.5' is not int"),
])
def test_host_status_rejects(change, reason):
    fields = dict(messages.encode_host_status(HOST), **{k: v for k, v in change.items() if v is not None})
    for k in [k for k, v in change.items() if v is None]:
        del fields[k]
    with pytest.raises(BadMessage, match=reason):
        messages.decode_host_status(redis_hash(fields))
    with pytest.raises(BadMessage):
        messages.decode_host_status({})


def test_task_status_round_trip():
    raw = messages.encode_task_status(TASK)
    assert isinstance(raw, bytes)
    assert messages.decode_task_status(raw) == TASK
    assert messages.decode_task_status(raw.decode()) == TASK


def test_task_status_is_written_as_it_always_was():
    # The daemon's dict, in its order, serialised the way the store does.
    assert messages.encode_task_status(TASK) == orjson.dumps({
        "state": "waiting", "reason": "outside work_hour", "active": 2, "limit": 10, "queue": "queue:sales",
        "queued": 17, "redials_pending": 1, "dialed": 40, "answered": 30, "failed": 10, "rejected": 1,
        "last_error": "", "counters": "cti_dialer_counter@d:sales", "updated": 1700000123.25,
        "machine": 0, "abandoned": 0, "abandon_rate": 0.0, "agents_free": -1, "pacing_risk": 0.0})


def test_a_task_status_from_before_the_pacing_fields_reads_with_their_defaults():
    doc = {k: v for k, v in dataclasses.asdict(TASK).items()
           if k not in ("machine", "abandoned", "abandon_rate", "agents_free", "pacing_risk")}
    assert messages.decode_task_status(orjson.dumps(doc)) == TASK


def test_task_status_reads_a_whole_number_time_and_ignores_unknown_fields():
    doc = dict(dataclasses.asdict(TASK), updated=1700000123, future=[1])
    status = messages.decode_task_status(orjson.dumps(doc))
    assert status == dataclasses.replace(TASK, updated=1700000123.0) and isinstance(status.updated, float)


@pytest.mark.parametrize("raw, reason", [
    (b"{", "task status: not valid JSON: unexpected end of data"),
    (None, "task status: no field 'state'"),
    (b"[1]", "task status: not a JSON object"),
    (orjson.dumps({k: v for k, v in dataclasses.asdict(TASK).items() if k != "queued"}), "no field 'queued'"),
    (orjson.dumps(dict(dataclasses.asdict(TASK), active="2")), "active = '2' is not int"),
    (orjson.dumps(dict(dataclasses.asdict(TASK), active=True)), "active = True is not int"),
    (orjson.dumps(dict(dataclasses.asdict(TASK), active=2.0)), "active = 2.0 is not int"),
    (orjson.dumps(dict(dataclasses.asdict(TASK), state=None)), "state = None is not str"),
    (orjson.dumps(dict(dataclasses.asdict(TASK), updated="now")), "updated = 'now' is not float"),
])
def test_task_status_rejects(raw, reason):
    with pytest.raises(BadMessage, match=reason.replace("[", r"\[")):
        messages.decode_task_status(raw)
