"""What the dialer builds, read back by the simulator's FreeSWITCH-like parser.

The property: for any variables, however hostile, ``build_originate`` either
refuses or sends a command the switch reads back as exactly those
variables (an empty value sets nothing, as on the switch), the same dial
string and the same destination.
"""
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cti_dialer.fsim.originate import OriginateError, parse_originate, separate_string
from cti_dialer.originate import UnsafeValue, build_originate

pytestmark = pytest.mark.fsim

GATEWAYS = ["sofia/gateway/gw1/", "user/", "loopback/", "sofia/external/"]

# Everything that means something to one of the switch's splitters, plus
# characters the dialer refuses for the ESL framing.
HOSTILE = " ',\\{}[]<>|&\"^=$:_()\n\r\t\x00\x85\u00a0sntab"


def _text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return value


def _read_back(variables, gateway="sofia/gateway/gw1/", prefix="", number="1000",
               extension="9999", dialplan="XML", context="default"):
    """The parsed command, or None when the dialer refused to build it."""
    try:
        command = build_originate(variables, gateway, prefix, number, extension, dialplan, context)
    except UnsafeValue:
        return None
    assert command.startswith("originate ")
    args = parse_originate(command[len("originate "):])
    dial = args.dial
    expected = {name: _text(value) for name, value in variables.items() if _text(value) != ""}
    assert dial.requested == expected
    assert dial.variables == expected and not dial.refused
    assert dial.url == f"{gateway}{prefix}{number}"
    assert not dial.multi_destination and not dial.enterprise
    assert (args.extension, args.dialplan, args.context) == (str(extension), dialplan, context)
    # Nothing spilled into the optional caller-id arguments.
    assert args.cid_name is None and args.cid_num is None and args.timeout == 60
    return args


names = st.text(alphabet="abcdefxyz_0123456789", min_size=1, max_size=12)
# Mostly harmless words with the odd hostile character, joined by spaces:
# the values this change lets through, and their near misses.
words = st.text(alphabet=st.sampled_from(list("abcXYZ019=$:.;@/+-é张" * 3 + HOSTILE)),
                min_size=1, max_size=6)
values = st.one_of(
    st.text(),
    st.text(alphabet=HOSTILE, max_size=16),
    st.lists(words, min_size=2, max_size=5).map(" ".join),
    st.lists(words, min_size=2, max_size=5).map(", ".join),
    st.sampled_from(["John Smith", "Eve, Jr", "a ' b", "x}y z", "a :_: b", "${x} y",
                     " lead", "trail ", "a\\sb", "it\\'s me", "a\\, b", "^^:a b"]),
    st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
)


@settings(max_examples=600, deadline=None, database=None)
@given(variables=st.dictionaries(names, values, max_size=4),
       gateway=st.sampled_from(GATEWAYS),
       prefix=st.sampled_from(["", "9", "+86"]),
       number=st.one_of(st.sampled_from(["1000", "+8613800138000", "*97#"]),
                        st.text(alphabet="0123456789+*#. ,'", min_size=1, max_size=12),
                        st.integers(min_value=0)),
       extension=st.sampled_from(["9999", "park", "queue_1@default", 1000, "8888 x", "a'b"]))
@example(variables={"origination_caller_id_name": "John Smith"}, gateway="user/", prefix="",
         number="1000", extension="9999")
def test_whatever_is_sent_reads_back_exactly(variables, gateway, prefix, number, extension):
    _read_back(variables, gateway, prefix, number, extension)


@settings(max_examples=600, deadline=None, database=None)
@given(name=names, value=values)
def test_one_variable_reads_back_exactly(name, value):
    # One variable at a time, so that a refused neighbour does not hide it.
    _read_back({name: value, "task_id": "t-1"})


plain_words = st.text(alphabet="abcXYZ019=$:.,;@/+-é张", min_size=1, max_size=6)


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(plain_words, min_size=1, max_size=5), st.sampled_from([" ", "  ", ", "]))
def test_words_with_inner_spaces_are_always_carried(words, glue):
    value = glue.join(words)
    if ":_:" in value:
        return
    assert _read_back({"origination_caller_id_name": value}) is not None


@pytest.mark.parametrize("value", ["John Smith", "Eve, Jr", "Jean-Luc  Picard", "a = b", "张 三",
                                   "O. Henry, Esq. 3rd"])
def test_caller_id_names_with_spaces(value):
    args = _read_back({"origination_caller_id_name": value, "task_id": "t-1"})
    assert args.dial.variables["origination_caller_id_name"] == value


# Why the remaining refusals are needed: what the switch would make of a
# value quoted the same way and sent.

@pytest.mark.parametrize("raw, variables", [
    # The block's cleanup trims spaces off both ends of a value.
    ("{a=' John '}user/1 9999", {"a": "John"}),
    ("{a=' '}user/1 9999", {}),
    # A backslash starts an escape even inside the quotes.
    ("{a='x\\sy z'}user/1 9999", {"a": "x y z"}),
    # A Windows path: backslash-n becomes a line feed.
    (r"{a='C:\new dir'}user/1 9999", {"a": "C:" + "\n" + "ew dir"}),
])
def test_values_that_would_arrive_changed(raw, variables):
    args = parse_originate(raw)
    assert args.dial.variables == variables
    assert (args.dial.url, args.extension) == ("user/1", "9999")


def test_a_quote_in_a_value_would_end_the_quoting():
    raw = "{a='it's me'}user/1 9999"
    # The space after "it's" splits the argument: the dial string loses
    # its destination and the rest becomes the extension.
    assert separate_string(raw, " ") == ["{a=its", "me'}user/1 9999"]
    with pytest.raises(OriginateError) as info:
        parse_originate(raw)
    assert info.value.result == "-ERR INVALID_NUMBER_FORMAT\n"

