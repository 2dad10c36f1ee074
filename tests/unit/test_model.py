import datetime
import json
import zoneinfo

import pytest

from cti_dialer import model

pytestmark = pytest.mark.unit
TZ = zoneinfo.ZoneInfo("Asia/Shanghai")


def task_json(params=None, variables=None):
    doc = {"params": params or {}}
    if variables is not None:
        doc["variables"] = variables
    return json.dumps(doc).encode()


BASE = {"line_group": ["g1", "g2"], "limit": 5, "number_queue": "queue:sales", "destination_extension": "8888"}


def test_template_only_gets_defaults():
    task = model.merge_task("t", task_json(BASE), None, TZ)
    assert task.enable is True
    assert task.limit == 5
    assert task.dialplan == "XML" and task.context == "default"
    assert task.line_groups == ("g1", "g2")
    assert task.source == "template"


def test_host_overrides_template_key_by_key():
    template = task_json(dict(BASE, limit=100, destination_context="public"))
    host = task_json({"limit": 3})
    task = model.merge_task("t", template, host, TZ)
    assert task.limit == 3
    assert task.context == "public"
    assert task.number_queue == "queue:sales"
    assert task.source == "template+host"


def test_host_only_task():
    task = model.merge_task("only", None, task_json(BASE), TZ)
    assert task.source == "host" and task.limit == 5


def test_template_switched_off_per_host():
    task = model.merge_task("t", task_json(BASE), task_json({"enable": False}), TZ)
    assert task.enable is False


def test_missing_everywhere_is_none():
    assert model.merge_task("t", None, None, TZ) is None


def test_limit_default_is_one():
    params = dict(BASE)
    del params["limit"]
    assert model.merge_task("t", task_json(params), None, TZ).limit == 1


@pytest.mark.parametrize("params, reason", [
    ({"line_group": ["g1"], "destination_extension": "1"}, "number_queue is missing"),
    ({"number_queue": "q", "destination_extension": "1"}, "line_group is missing"),
    ({"number_queue": "q", "line_group": ["g"]}, "destination_extension is missing"),
    (dict(BASE, limit=-1), "limit must be an integer"),
    (dict(BASE, limit="5"), "limit must be an integer"),
    (dict(BASE, limit=True), "limit must be an integer"),
    (dict(BASE, enable="yes"), "enable must be true or false"),
    (dict(BASE, line_group=[]), "line_group must be a non-empty list"),
    (dict(BASE, limt=3), "unknown params limt"),
    (dict(BASE, destination_extension="88 88"), "extension"),
    (dict(BASE, destination_context="de}fault"), "context"),
    (dict(BASE, work_hour=[{"begin": "25:00", "end": "26:00"}]), "work_hour"),
    (dict(BASE, work_hour=[{"begin": "8:00", "end": "9:00", "wday": 9}]),
     "task 't': work_hour[0].wday: 9 is not a weekday"),
    (dict(BASE, work_time=[{"begin": "8:00", "end": "9:00", "wday": "x"}]),
     "task 't': work_time[0].wday: 'x' is not a weekday"),
    (dict(BASE, work_hour=[{"begin": "8:00", "end": "9:00", "wday": True}]),
     "task 't': work_hour[0].wday: expected an int or a string"),
])
def test_invalid_tasks_say_why(params, reason):
    with pytest.raises(model.ModelError) as err:
        model.merge_task("t", task_json(params), None, TZ)
    assert reason in str(err.value)


@pytest.mark.parametrize("variables, reason", [
    ({"bad name": "x"}, "bad name"),
    ({"x": "a}b"}, "}"),
    ({"x": "a\nb"}, "x"),
    ({"x": ["list"]}, "x"),
])
def test_invalid_task_variables_reject_the_task(variables, reason):
    with pytest.raises(model.ModelError) as err:
        model.merge_task("t", task_json(BASE, variables), None, TZ)
    assert reason in str(err.value)


def test_not_json_names_the_scope():
    with pytest.raises(model.ModelError) as err:
        model.merge_task("t", b"{not json", None, TZ)
    assert "@template" in str(err.value) and "not valid JSON" in str(err.value)
    with pytest.raises(model.ModelError) as err:
        model.merge_task("t", task_json(BASE), b"[1,2]", TZ)
    assert "@host" in str(err.value)


def test_work_time_is_a_synonym():
    task = model.merge_task("t", task_json(dict(BASE, work_time=[{"begin": "8:00", "end": "9:00"}])), None, TZ)
    assert task.window != model.timewindow.ALWAYS_OPEN


def test_host_work_time_replaces_template_work_hour():
    template = task_json(dict(BASE, work_hour=[{"begin": "8:00", "end": "9:00"}]))
    host = task_json({"work_time": [{"begin": "10:00", "end": "11:00"}]})
    a = model.merge_task("t", template, host, TZ)
    b = model.merge_task("t", task_json(dict(BASE, work_hour=[{"begin": "10:00", "end": "11:00"}])), None, TZ)
    assert a.window == b.window


def test_host_work_time_with_wday_replaces_template_work_hour():
    saturday = [{"begin": "10:00", "end": "14:00", "wday": "6"}]
    template = task_json(dict(BASE, work_hour=[{"begin": "8:00", "end": "18:00", "wday": 1}]))
    a = model.merge_task("t", template, task_json({"work_time": saturday}), TZ)
    b = model.merge_task("t", task_json(dict(BASE, work_hour=saturday)), None, TZ)
    assert a.window == b.window
    assert model.timewindow.is_open(a.window, datetime.datetime(2020, 1, 25, 11, tzinfo=TZ))
    assert not model.timewindow.is_open(a.window, datetime.datetime(2020, 1, 20, 11, tzinfo=TZ))


def test_numeric_extension_accepted():
    task = model.merge_task("t", task_json(dict(BASE, destination_extension=8888)), None, TZ)
    assert task.extension == "8888"


def test_task_variables_keep_scopes_apart():
    task = model.merge_task("t", task_json(BASE, {"a": "template"}), task_json({}, {"a": "host", "b": "h"}), TZ)
    assert dict(task.template_variables) == {"a": "template"}
    assert dict(task.host_variables) == {"a": "host", "b": "h"}


def test_variable_precedence_number_host_template_line_own():
    merged = model.channel_variables(
        (("a", "number"), ("b", "number"), ("c", "number"), ("d", "number"), ("origination_uuid", "n")),
        (("b", "host"), ("c", "host"), ("d", "host")),
        (("c", "template"), ("d", "template")),
        (("d", "line"), ("origination_uuid", "line")),
        own={"origination_uuid": "ours"})
    assert merged == {"a": "number", "b": "host", "c": "template", "d": "line", "origination_uuid": "ours"}


def test_commas_survive_as_escaped():
    task = model.merge_task("t", task_json(BASE, {"absolute_codec_string": "pcma,pcmu,g729"}), None, TZ)
    assert dict(task.template_variables)["absolute_codec_string"] == "pcma,pcmu,g729"
    cmd = model.originate.build_originate(dict(task.template_variables), "sofia/gateway/g/", "", "1", "8888",
                                          "XML", "default")
    assert cmd == "originate {absolute_codec_string=pcma\\,pcmu\\,g729}sofia/gateway/g/1 8888 XML default"


def test_variable_types_become_text():
    task = model.merge_task("t", task_json(BASE, {"a": True, "b": 5, "c": False}), None, TZ)
    assert dict(task.template_variables) == {"a": "true", "b": "5", "c": "false"}


def test_line_parse_and_errors():
    line = model.parse_line("gw1", json.dumps({"params": {"gateway": "sofia/gateway/gw1/", "limit": 30,
                                                          "prefix": "9"}, "variables": {"x": "1"}}))
    assert (line.gateway, line.prefix, line.limit, line.enable) == ("sofia/gateway/gw1/", "9", 30, True)
    for doc, reason in [({"params": {"limit": 1}}, "gateway is missing"),
                        ({"params": {"gateway": "sofia/gateway/x/"}}, "limit is missing"),
                        ({"params": {"gateway": "sofia/gateway/x y/", "limit": 1}}, "gateway"),
                        ({"params": {"gateway": "g/", "limit": 1, "prefix": "9,1"}}, "prefix")]:
        with pytest.raises(model.ModelError) as err:
            model.parse_line("l", json.dumps(doc))
        assert reason in str(err.value)


def test_group_parse():
    assert model.parse_group("g", '{"lines": ["a", "b"]}').lines == ("a", "b")
    with pytest.raises(model.ModelError):
        model.parse_group("g", '{"lines": []}')
    with pytest.raises(model.ModelError):
        model.parse_group("g", '{"lines": "a b"}')


@pytest.mark.parametrize("raw, number, variables", [
    (b"13800138000", "13800138000", {}),
    (b'{"params": {"number": "13800138000"}, "variables": {"x": "1"}}', "13800138000", {"x": "1"}),
    (b'{"params": {"number": 13800138000}}', "13800138000", {}),
])
def test_number_entries(raw, number, variables):
    entry = model.parse_number(raw)
    assert entry.number == number and dict(entry.variables) == variables


@pytest.mark.parametrize("raw", [
    b"1000 &system(touch /tmp/x)", b"123\n\napi hupall", b"123,456", b"", b"\xff\xfe",
    b'{"params": {}}', b'{"params": {"number": "1"}, "variables": {"bad name": "x"}}',
    b'{"params": {"number": "1"}, "variables": {"x": "a}b"}}', b'{"params": {"number": true}}', b"{oops",
    b" 123",
])
def test_bad_number_entries(raw):
    with pytest.raises(model.ModelError):
        model.parse_number(raw)


def test_names_checked():
    with pytest.raises(model.ModelError):
        model.merge_task("bad name", task_json(BASE), None, TZ)
    assert model.check_name(b"ok", "task") == "ok"


def test_variable_names_merge_without_case():
    merged = model.channel_variables((("ORIGINATION_UUID", "theirs"), ("Foo", "1")), (("foo", "2"),),
                                     own={"origination_uuid": "ours"})
    assert merged == {"foo": "2", "origination_uuid": "ours"}


@pytest.mark.parametrize("name", ["api_on_answer", "execute_on_answer", "API_HANGUP_HOOK", "origination_uuid",
                                  "session_in_hangup_hook", "exec_after_bridge_app", "bridge_pre_execute_aleg_app"])
def test_hook_variables_refused_from_number_entries(name):
    raw = json.dumps({"params": {"number": "1"}, "variables": {name: "x"}})
    with pytest.raises(model.ModelError) as err:
        model.parse_number(raw)
    assert "not allowed from a number entry" in str(err.value)


def test_enterprise_separator_refused_from_number_entries():
    raw = json.dumps({"params": {"number": "2010"}, "variables": {"x_num": "a:_:loopback/1999"}})
    with pytest.raises(model.ModelError) as err:
        model.parse_number(raw)
    assert str(err.value).startswith("number entry variables: variable 'x_num' value 'a:_:loopback/1999': "
                                     "contains ':_:'")


def test_variable_references_refused_from_every_layer():
    # The switch drops them whatever the layer (switch_channel_set_variable_var_check).
    with pytest.raises(model.ModelError) as err:
        model.merge_task("t", task_json(BASE, {"api_hangup_hook": "curl http://x/${uuid}"}), None, TZ)
    assert "task 't' (@template) variables: variable 'api_hangup_hook' value" in str(err.value)
    assert "contains '${'" in str(err.value)
    with pytest.raises(model.ModelError, match="contains '\\$\\{'"):
        model.parse_number(json.dumps({"params": {"number": "1"}, "variables": {"x": "${uuid}"}}))


def test_undef_destination_refused():
    with pytest.raises(model.ModelError, match="takes 'undef' for a missing argument"):
        model.merge_task("t", task_json(dict(BASE, destination_context="undef")), None, TZ)


def test_hook_variables_allowed_in_tasks():
    task = model.merge_task("t", task_json(BASE, {"execute_on_answer": "record_session"}), None, TZ)
    assert dict(task.template_variables) == {"execute_on_answer": "record_session"}


def test_redial_param_parsed_and_checked():
    task = model.merge_task("t", task_json(dict(BASE, redial={"busy": {"count": 2, "interval": 300}})), None, TZ)
    assert task.redial.rule("busy").count == 2 and task.redial.rule("no_answer") is None
    assert not model.merge_task("t", task_json(BASE), None, TZ).redial
    with pytest.raises(model.ModelError) as err:
        model.merge_task("t", task_json(dict(BASE, redial={"busy": {"count": "x", "interval": 1}})), None, TZ)
    assert "redial.busy.count" in str(err.value)
    cfg = model.parse_schedule_config("c", json.dumps({"params": {"line_group": ["g"], "destination_extension": "1",
                                                                  "redial": {"no_answer": {"count": 1}}}}))
    assert cfg.redial.rule("no_answer").interval == 0


def test_number_entry_id():
    assert model.parse_number('{"params": {"number": "1", "id": "order-7"}}').id == "order-7"
    assert model.parse_number('{"params": {"number": "1", "id": 42}}').id == "42"
    assert model.parse_number("1").id is None
    for bad in ('"id": ""', '"id": true', '"id": {"a": 1}', '"id": "%s"' % ("x" * 129)):
        with pytest.raises(model.ModelError):
            model.parse_number('{"params": {"number": "1", %s}}' % bad)


@pytest.mark.parametrize("params, limit", [
    ({"limit": 5}, 5),
    ({"count": 7}, 7),                      # mod_cti's name for the same setting
    ({"limit": 3, "count": 3}, 3),
])
def test_line_capacity_is_limit_or_mod_cti_count(params, limit):
    raw = json.dumps({"params": {"gateway": "sofia/gateway/gw/", **params}})
    assert model.parse_line("l1", raw).limit == limit


@pytest.mark.parametrize("params, reason", [
    ({}, "limit is missing"),
    ({"limit": 3, "count": 4}, "limit 3 and count 4 disagree"),
    ({"count": -1}, "count"),
    ({"count": "x"}, "count"),
])
def test_line_capacity_errors(params, reason):
    raw = json.dumps({"params": {"gateway": "sofia/gateway/gw/", **params}})
    with pytest.raises(model.ModelError) as info:
        model.parse_line("l1", raw)
    assert reason in str(info.value)


@pytest.mark.parametrize("doc, tiers, enable", [
    ({"lines": ["a", "b"]}, (("a", "b"),), True),                                   # ours
    ({"params": {"lines": ["a"]}}, (("a",),), True),
    ({"line": ["a", "b"]}, (("a", "b"),), True),                                    # mod_cti, one tier
    ({"enable": True, "line": [["first1", "first2"], ["second1"]]},
     (("first1", "first2"), ("second1",)), True),                                   # mod_cti tiers
    ({"enable": False, "line": ["a"]}, (("a",),), False),
])
def test_groups_ours_and_mod_cti(doc, tiers, enable):
    group = model.parse_group("g1", json.dumps(doc))
    assert (group.tiers, group.enable) == (tiers, enable)
    assert group.lines == tuple(line for tier in tiers for line in tier)


@pytest.mark.parametrize("doc, reason", [
    ({"line": ["a"], "lines": ["b"]}, "not both"),
    ({"line": [["a"], "b"]}, "mixes line names and tiers"),
    ({"line": [["a"], ["a"]]}, "listed twice"),
    ({"line": [["a"], []]}, "line[1]"),
    ({"line": ["a"], "enable": "yes"}, "enable"),
    ({"line": ["a"], "rest": -1}, "rest must be a number 0..86400000"),
    ({"line": ["a"], "rest": "soon"}, "rest must be a number"),
    ({"line": ["a"], "rest": True}, "rest must be a number"),
    ({"line": ["a"], "redialer_rule": 5}, "redialer_rule must be a rule object or a list"),
    ({"line": ["a"], "redialer_rule": [5]}, "redialer_rule[0] must be an object"),
    ({"line": ["a"], "redialer_rule": {}}, "redialer_rule is empty"),
    ({"line": ["a"], "redialer_rule": {"hangup_code": [486]}}, "unknown fields hangup_code"),
    ({"line": ["a"], "redialer_rule": {"hangup_sipcode": [86]}}, "86 is not a number 100..699"),
    ({"line": ["a"], "redialer_rule": {"hangup_cause": ["busy"]}}, "'busy' is not a number"),
    ({"line": ["a"], "redialer_rule": {"duration": -3}}, "duration must be seconds"),
    ({"line": ["a"], "no_redialer_rule": {"bill": "x"}}, "no_redialer_rule.bill must be seconds"),
    ({"line": ["a"], "redialer_count": -1}, "redialer_count must be an integer 0..100"),
    ({"line": ["a"], "redialer_count": 2}, "redialer_count 2 needs redialer_rule"),
    ({"line": ["a"], "colour": "red"}, "unknown fields colour"),
])
def test_group_errors(doc, reason):
    with pytest.raises(model.ModelError) as info:
        model.parse_group("g1", json.dumps(doc))
    assert reason in str(info.value)


@pytest.mark.parametrize("dialstring, gateway, suffix", [
    ("sofia/gateway/ims/${destination_number}", "sofia/gateway/ims/", ""),
    ("loopback/${destination_number}/default", "loopback/", "/default"),
])
def test_mod_cti_dialstring_puts_the_number_in_its_place(dialstring, gateway, suffix):
    line = model.parse_line("l1", json.dumps({"params": {"dialstring": dialstring, "count": 2}}))
    assert (line.gateway, line.prefix, line.suffix) == (gateway, "", suffix)


@pytest.mark.parametrize("params, reason", [
    ({"dialstring": "user/1000"}, "exactly once"),                                    # one fixed destination
    ({"dialstring": "sofia/${destination_number}/${destination_number}"}, "exactly once"),
    ({"dialstring": "sofia/gateway/${sip_gw}/${destination_number}"}, "dialstring"),  # the switch's own ${...}
    ({"dialstring": "a:_:b/${destination_number}"}, ":_:"),
    ({"dialstring": "sofia/gw/${destination_number} x"}, "dialstring"),
    ({"dialstring": "sofia/gw/${destination_number}", "gateway": "sofia/gw/"}, "not both"),
    ({"dialstring": 5}, "expected a string"),
])
def test_bad_dialstrings_are_refused(params, reason):
    with pytest.raises(model.ModelError) as info:
        model.parse_line("l1", json.dumps({"params": {"limit": 1, **params}}))
    assert reason in str(info.value)
