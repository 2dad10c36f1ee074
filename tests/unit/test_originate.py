import re
from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cti_dialer.originate import (
    UnsafeValue,
    build_api,
    build_bgapi,
    build_originate,
    check_destination,
    check_gateway,
    check_number,
    check_prefix,
    check_var_name,
    format_value,
)

pytestmark = pytest.mark.unit

JOB = "123e4567-e89b-12d3-a456-426614174000"
FORBIDDEN = set("{}[]<>|&'\"^\\")


def originate(variables=None, gateway="sofia/gateway/gw1/", prefix="", number="1000",
              extension="9999", dialplan="XML", context="default"):
    return build_originate(variables or {}, gateway, prefix, number, extension,
                           dialplan, context)


# ---------------------------------------------------------------- valid commands

@pytest.mark.parametrize("kwargs, expected", [
    ({}, "originate sofia/gateway/gw1/1000 9999 XML default"),
    ({"variables": {"absolute_codec_string": "pcma,pcmu,g729"}},
     r"originate {absolute_codec_string=pcma\,pcmu\,g729}sofia/gateway/gw1/1000 "
     "9999 XML default"),
    ({"variables": OrderedDict([("b", 1), ("a", True), ("c", False), ("d", 2.5)])},
     "originate {b=1,a=true,c=false,d=2.5}sofia/gateway/gw1/1000 9999 XML default"),
    ({"variables": {"origination_caller_id_name": "张三", "task_id": "t-42"},
      "prefix": "9", "number": "13800138000"},
     "originate {origination_caller_id_name=张三,task_id=t-42}"
     "sofia/gateway/gw1/913800138000 9999 XML default"),
    ({"variables": {"empty": ""}, "gateway": "user/", "number": 1001},
     "originate {empty=}user/1001 9999 XML default"),
    ({"variables": {"x": "a=b:c@d/e;f$g%h"}, "gateway": "loopback/", "number": "*97#",
      "extension": "park", "dialplan": "inline", "context": "call-center.v2"},
     "originate {x=a=b:c@d/e;f$g%h}loopback/*97# park inline call-center.v2"),
    ({"number": "+86-138.0000_0000", "prefix": 0},
     "originate sofia/gateway/gw1/0+86-138.0000_0000 9999 XML default"),
    ({"extension": "queue_1@default", "context": "public"},
     "originate sofia/gateway/gw1/1000 queue_1@default XML public"),
    ({"variables": OrderedDict([("origination_caller_id_name", "John Smith"), ("a", 1)])},
     "originate {origination_caller_id_name='John Smith',a=1}sofia/gateway/gw1/1000 "
     "9999 XML default"),
    ({"variables": {"origination_caller_id_name": "Eve, Jr"}},
     r"originate {origination_caller_id_name='Eve\, Jr'}sofia/gateway/gw1/1000 9999 XML default"),
])
def test_build_originate(kwargs, expected):
    assert originate(**kwargs) == expected


def test_seed_codec_string():
    assert format_value("absolute_codec_string", "pcma,pcmu,g729") == r"pcma\,pcmu\,g729"


@pytest.mark.parametrize("value, expected", [
    ("plain", "plain"),
    (True, "true"),
    (False, "false"),
    (0, "0"),
    (-7, "-7"),
    (30, "30"),
    (1.5, "1.5"),
    ("", ""),
    ("张三", "张三"),
    ("a,,b", r"a\,\,b"),
    (",", r"\,"),
    ("John Smith", "'John Smith'"),
    ("Eve, Jr", r"'Eve\, Jr'"),
    ("a  b c", "'a  b c'"),
    ("x=a b", "'x=a b'"),
    ("${x}", None),
])
def test_format_value(value, expected):
    if expected is None:
        with pytest.raises(UnsafeValue):
            format_value("v", value)
    else:
        assert format_value("v", value) == expected


def test_bgapi_and_api():
    command = originate({"a": 1})
    assert build_bgapi(command, JOB) == f"bgapi {command}\nJob-UUID: {JOB}"
    assert build_api("uuid_exists", JOB) == f"api uuid_exists {JOB}"
    assert build_api("status") == "api status"
    assert build_api("uuid_kill", JOB, "NORMAL_CLEARING") == \
        f"api uuid_kill {JOB} NORMAL_CLEARING"
    assert build_api("sofia", "status", "gateway", "gw1", 5) == \
        "api sofia status gateway gw1 5"


# ---------------------------------------------------------------- hostile input

@pytest.mark.parametrize("number, reason", [
    ("1000 &system(touch /tmp/x)", "contains a space"),
    ("123\n\napi hupall", "contains a line feed (LF)"),
    ("123\r\n", "contains a carriage return (CR)"),
    ("123\t", "contains a tab"),
    ("123,456", "contains ','"),
    ("123|sofia/gateway/x/1", "contains '|'"),
    ("123@evil", "contains '@'"),
    ("sip:123", "contains ':'"),
    ("a/b", "contains '/'"),
    ("1}{", "contains '}'"),
    ("１２３", "contains '１'"),
    ("123\x00", "contains control character U+0000"),
    ("", "is empty"),
    ("1" * 65, "longer than 64 characters"),
    (None, "expected a string or an int, got NoneType"),
    (True, "expected a string or an int, got bool"),
    (1.5, "expected a string or an int, got float"),
    (["123"], "expected a string or an int, got list"),
])
def test_check_number_rejects(number, reason):
    with pytest.raises(UnsafeValue) as caught:
        check_number(number)
    assert str(caught.value).startswith("number ")
    assert str(caught.value).endswith(reason)
    with pytest.raises(UnsafeValue):
        originate(number=number)


def test_error_message_names_field_value_and_reason():
    with pytest.raises(UnsafeValue) as caught:
        check_number("1000 &system(touch /tmp/x)")
    assert str(caught.value) == "number '1000 &system(touch /tmp/x)': contains a space"
    with pytest.raises(UnsafeValue) as caught:
        format_value("x", "a}b")
    assert str(caught.value) == "variable 'x' value 'a}b': contains '}'"


def test_error_message_truncates_and_escapes_the_value():
    with pytest.raises(UnsafeValue) as caught:
        format_value("x", "A" * 500 + "\n")
    message = str(caught.value)
    assert "\n" not in message
    assert len(message) < 200
    assert message.endswith("...: contains a line feed (LF)")


@pytest.mark.parametrize("name", [
    "bad name", "a-b", "", "a.b", "a=b", "a,b", "a}b", "ä", "x\n", "x" * 129, None, 1, True,
])
def test_bad_variable_names(name):
    with pytest.raises(UnsafeValue, match=r"^variable name "):
        check_var_name(name)
    with pytest.raises(UnsafeValue):
        originate({name: "1"})


TRIMMED = "starts or ends with a space (FreeSWITCH trims it when it splits the variable block, " \
    "so it would not arrive)"


@pytest.mark.parametrize("value, reason", [
    ("a}b", "contains '}'"),
    ("a{b", "contains '{'"),
    ("it's", "contains \"'\""),
    ('say "hi"', "contains '\"'"),
    ("it's me", "contains \"'\""),
    ("'a b'", "contains \"'\""),
    ("a b\\", "contains '\\\\'"),
    ('"hi"', "contains '\"'"),
    ("a\nb", "contains a line feed (LF)"),
    ("a\rb", "contains a carriage return (CR)"),
    ("a\tb", "contains a tab"),
    (" John", TRIMMED),
    ("John ", TRIMMED),
    (" ", TRIMMED),
    ("  a b  ", TRIMMED),
    ("a^b", "contains '^'"),
    ("^^:a:b", "contains '^'"),
    ("a\\b", "contains '\\\\'"),
    ("a\\,b", "contains '\\\\'"),
    ("a|b", "contains '|'"),
    ("a&b", "contains '&'"),
    ("a<b", "contains '<'"),
    ("a>b", "contains '>'"),
    ("a[b", "contains '['"),
    ("a]b", "contains ']'"),
    ("a\x7fb", "contains control character U+007F"),
    ("a\x85b", "contains control character U+0085"),
    ("a\x1bb", "contains control character U+001B"),
    ("a\ud800b", "contains unpaired surrogate U+D800"),
    ("x" * 1025, "longer than 1024 characters"),
    (None, "unsupported type NoneType (expected str, bool, int or float)"),
    ([1, 2], "unsupported type list (expected str, bool, int or float)"),
    ({"a": 1}, "unsupported type dict (expected str, bool, int or float)"),
    (b"bytes", "unsupported type bytes (expected str, bool, int or float)"),
    (float("nan"), "not a finite number"),
    (float("inf"), "not a finite number"),
])
def test_bad_variable_values(value, reason):
    with pytest.raises(UnsafeValue) as caught:
        format_value("v", value)
    assert str(caught.value).startswith("variable 'v' value ")
    assert str(caught.value).endswith(reason)
    with pytest.raises(UnsafeValue):
        originate({"ok": 1, "v": value})


def test_enterprise_separator_refused_in_values():
    # The value that made a real FreeSWITCH dial loopback/1999
    # (freeswitch-captures/07_real_enterprise_injection.txt).
    with pytest.raises(UnsafeValue) as caught:
        originate({"x_num": "a:_:loopback/1999"}, gateway="loopback/", number="2010")
    assert str(caught.value).startswith("variable 'x_num' value 'a:_:loopback/1999': contains ':_:' "
                                        "(FreeSWITCH's enterprise-originate separator")
    for value in (":_:", "x:_:", ":_:x", "a,b:_:c"):
        with pytest.raises(UnsafeValue, match="contains ':_:'"):
            format_value("v", value)
    for value in (":_", "_:", ":__:", ":_x:", "a:b_c"):
        assert ":_:" not in format_value("v", value)


@pytest.mark.parametrize("value", ["${uuid}", "x${a}", "${", "$${hold_music}"])
def test_variable_references_refused_with_a_reason(value):
    with pytest.raises(UnsafeValue) as caught:
        format_value("v", value)
    assert str(caught.value).endswith(
        "contains '${' (FreeSWITCH refuses to set a variable whose value holds a ${...} "
        "reference and would silently drop it)")


def test_lone_dollar_and_brace_keep_their_own_reasons():
    assert format_value("v", "$5") == "$5"
    with pytest.raises(UnsafeValue, match=r"contains '\{'$"):
        format_value("v", "{x}")


@pytest.mark.parametrize("kwargs, field", [
    ({"gateway": "sofia/gateway/gw:_:loopback/"}, "gateway"),
    ({"gateway": ":_:user/"}, "gateway"),
    ({"extension": "8888:_:1"}, "extension"),
])
def test_enterprise_separator_refused_in_routing(kwargs, field):
    with pytest.raises(UnsafeValue, match=f"^{field} .*: contains ':_:'"):
        originate(**kwargs)


def test_enterprise_separator_refused_across_pieces(monkeypatch):
    # No number can start with ":" today; the dial string is checked whole in
    # case a whitelist ever allows it.
    monkeypatch.setattr("cti_dialer.originate.check_number", str)
    with pytest.raises(UnsafeValue, match="^dial string 'sofia/gateway/gw:_:1': contains ':_:'"):
        originate(gateway="sofia/gateway/gw:_", number=":1")


@pytest.mark.parametrize("extension, dialplan, context, field", [
    ("undef", "XML", "default", "extension"),
    ("1000", "UNDEF", "default", "dialplan"),
    ("1000", "XML", "Undef", "context"),
])
def test_undef_is_not_an_argument(extension, dialplan, context, field):
    with pytest.raises(UnsafeValue) as caught:
        check_destination(extension, dialplan, context)
    assert str(caught.value).startswith(f"{field} ")
    assert str(caught.value).endswith("FreeSWITCH's originate command takes 'undef' for a missing argument")


def test_undef_inside_a_name_is_fine():
    assert check_destination("undef1", "XMLundef", "undefined") == ("undef1", "XMLundef", "undefined")


def test_longest_value_is_accepted():
    assert format_value("v", "x" * 1024) == "x" * 1024


@pytest.mark.parametrize("gateway", [
    "sofia/gateway/gw 1/", "sofia/gateway/gw1/,", "sofia/gateway/{x}/", "", None, 5,
    "sofia/gateway/gw1/\n", "a|b/", "g" * 257, "sofia/gateway/gw1/[x]",
])
def test_bad_gateways(gateway):
    with pytest.raises(UnsafeValue, match=r"^gateway "):
        check_gateway(gateway)
    with pytest.raises(UnsafeValue):
        originate(gateway=gateway)


@pytest.mark.parametrize("gateway", [
    "sofia/gateway/gw1/", "user/", "loopback/", "sofia/internal/", "sofia/gateway/a.b-c_d:5060/",
    "sofia/external/+=@/",
])
def test_good_gateways(gateway):
    assert check_gateway(gateway) == gateway


@pytest.mark.parametrize("prefix, ok", [
    ("", True), ("9", True), (9, True), ("+86", True), ("*#", True), ("p" * 32, True),
    ("9 ", False), ("9,", False), ("9-", False), (None, False), (True, False), ("p" * 33, False),
])
def test_prefix(prefix, ok):
    if ok:
        assert check_prefix(prefix) == str(prefix)
    else:
        with pytest.raises(UnsafeValue, match=r"^prefix "):
            check_prefix(prefix)


@pytest.mark.parametrize("extension, dialplan, context, field", [
    ("9999 &", "XML", "default", "extension"),
    ("", "XML", "default", "extension"),
    ("a,b", "XML", "default", "extension"),
    ("9999", "X ML", "default", "dialplan"),
    ("9999", "XML.x", "default", "dialplan"),
    ("9999", "", "default", "dialplan"),
    ("9999", "XML", "default\n", "context"),
    ("9999", "XML", "de/fault", "context"),
    ("9999", "XML", "", "context"),
    ("9999", "XML", None, "context"),
])
def test_bad_destinations(extension, dialplan, context, field):
    with pytest.raises(UnsafeValue, match=f"^{field} "):
        check_destination(extension, dialplan, context)


def test_good_destination():
    assert check_destination("1000", "XML", "default") == ("1000", "XML", "default")
    assert check_destination(1000, "inline", "a.b-c") == ("1000", "inline", "a.b-c")


def test_variables_must_be_a_mapping():
    with pytest.raises(UnsafeValue):
        originate([("a", "1")])


@pytest.mark.parametrize("command, job_uuid", [
    ("status\napi hupall", JOB),
    ("status\r", JOB),
    ("", JOB),
    (None, JOB),
    ("status", JOB.upper()),
    ("status", JOB.replace("-", "")),
    ("status", "{" + JOB + "}"),
    ("status", JOB + "\n"),
    ("status", JOB + "\nContent-Type: x"),
    ("status", ""),
    ("status", None),
])
def test_bad_bgapi(command, job_uuid):
    with pytest.raises(UnsafeValue):
        build_bgapi(command, job_uuid)


@pytest.mark.parametrize("command, args", [
    ("uuid_exists", (JOB + " ; hupall",)),
    ("uuid_exists", (JOB + "\n",)),
    ("uuid_exists", ("",)),
    ("uuid_exists", ("a,b",)),
    ("uuid_exists", (None,)),
    ("uuid exists", ()),
    ("status\n", ()),
    ("", ()),
])
def test_bad_api(command, args):
    with pytest.raises(UnsafeValue):
        build_api(command, *args)


# ---------------------------------------------------------------- properties

def _unescaped_commas(text):
    return re.search(r"(?<!\\),", text) is not None


def _assert_safe_or_refused(value):
    try:
        out = format_value("v", value)
    except UnsafeValue:
        return
    if " " in value:
        assert out[0] == out[-1] == "'" and len(out) > 2
        out = out[1:-1]
        assert out == out.strip(" ")
    assert "'" not in out
    assert not _unescaped_commas(out)
    assert out.replace("\\,", ",") == value
    assert not (set(out.replace("\\,", "")) & FORBIDDEN)
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in out)
    assert ":_:" not in out and "${" not in out


@settings(max_examples=500, deadline=None, database=None)
@given(st.text())
def test_format_value_never_leaks_a_separator(value):
    _assert_safe_or_refused(value)


@settings(max_examples=500, deadline=None, database=None)
@given(st.text(alphabet=st.sampled_from(sorted(FORBIDDEN | set(" ,\n\r\tab1=$:_")))))
def test_format_value_on_separator_heavy_text(value):
    _assert_safe_or_refused(value)


name_strategy = st.text(alphabet="abcxyz_019", min_size=1, max_size=8)
value_strategy = st.one_of(st.text(), st.text(alphabet=":_$x{ '"), st.booleans(), st.integers(),
                           st.floats(allow_nan=False, allow_infinity=False))


@settings(max_examples=300, deadline=None, database=None)
@given(variables=st.dictionaries(name_strategy, value_strategy, max_size=5),
       number=st.one_of(st.text(max_size=20), st.integers()),
       prefix=st.text(max_size=4))
def test_build_originate_keeps_its_shape(variables, number, prefix):
    try:
        command = originate(variables, prefix=prefix, number=number)
    except UnsafeValue:
        return
    assert "\n" not in command and "\r" not in command
    assert ":_:" not in command
    # Quoted spans are what the switch's blank splitter keeps whole.
    assert command.count("'") % 2 == 0
    quoted = re.findall(r"'([^']*)'", command)
    assert all(q and q == q.strip(" ") and "\\" not in q.replace("\\,", "") for q in quoted)
    head, dial, extension, dialplan, context = re.sub(r"'[^']*'", "Q", command).split(" ")
    assert (head, extension, dialplan, context) == ("originate", "9999", "XML", "default")
    if variables:
        assert dial.startswith("{") and dial.count("{") == 1 and dial.count("}") == 1
        inner, target = dial[1:].split("}")
        pairs = re.split(r"(?<!\\),", inner)
        assert [p.split("=", 1)[0] for p in pairs] == list(variables)
    else:
        target = dial
        assert "{" not in dial
    assert target == "sofia/gateway/gw1/" + prefix + str(number)
