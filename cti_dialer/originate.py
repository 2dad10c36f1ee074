"""The only place where ESL command text is composed.

Numbers, variables and routing data come from Redis, which operators (and
whatever feeds them) can write to.  ESL is line-based and the originate
syntax gives meaning to spaces, braces, brackets, pipes, commas and quotes,
so every piece is checked against a whitelist and anything that could change
the command's shape raises :class:`UnsafeValue` instead of being sent.
Two things are protected on purpose, only inside variable values: commas,
as ``\\,``, so codec lists such as ``pcma,pcmu`` arrive intact, and spaces,
by putting the whole value in single quotes, so a caller-id name such as
``John Smith`` arrives intact.

How FreeSWITCH reads ``originate <dial string> <exten> <dialplan> <context>``
(signalwire/freeswitch), which is why the whitelists look the way they do:

- ``mod_event_socket.c`` ``parse_command()`` ends the command at its first
  CR or LF (``strip_cr()``) and cuts ``bgapi`` from its argument at the
  first space; it does nothing else to the argument, quotes included.
- ``mod_commands.c`` ``originate_function()`` splits the argument at spaces
  with ``switch_separate_string()`` (``switch_utils.c``), and takes any
  argument equal to ``undef`` (any case) as omitted.  Its blank splitter,
  ``separate_string_blank_delim()``, flips "inside quotes" at every ``'``
  and splits at no space inside them; a backslash makes the next character
  ordinary.  Each argument then goes through ``cleanup_separated_string()``
  with no delimiter, which drops the quote pairs, turns ``\\s \\n \\r \\t
  \\' \\" \\\\`` into characters and leaves ``\\,`` as it is.  So
  ``{n='John Smith'}sofia/...`` is one argument and reaches the dial-string
  parser as ``{n=John Smith}sofia/...``.  A ``'`` inside a value would end
  the quoting early, and a backslash could start an escape, so both stay
  refused.
- ``switch_ivr_originate.c`` ``switch_ivr_originate()`` first looks for
  ``:_:`` (``SWITCH_ENT_ORIGINATE_DELIM``) anywhere in the dial string with
  ``strstr()``; if found, ``switch_ivr_enterprise_originate()`` cuts the
  whole string there with ``switch_separate_string_string()``, which knows
  no braces, quotes or escapes, and dials each piece.  Nothing can protect
  ``:_:``, so it is refused in every piece of the command.  No other
  separator has that power: ``|`` (one after the other) and ``,`` (at the
  same time) split only what is left once the leading ``<...>`` and
  ``{...}`` blocks are parsed, and ``[...]`` opens a block only at the start
  of a leg.
- The ``{...}`` block goes through ``switch_event_create_brackets()``
  (``switch_event.c``): ``switch_separate_string()`` on ``,``, where a
  backslash keeps the next character from splitting and
  ``cleanup_separated_string()`` turns ``\\,`` back into ``,``; then each
  pair splits at its first ``=`` (``switch_separate_string()`` again, two
  pieces at most).  Spaces split nothing at these two levels, but both
  cleanups trim them off either end of a piece, so a value that starts or
  ends with a space is refused rather than sent shortened; an empty value
  gives one piece only and sets nothing.  A ``|`` inside a ``{...}`` value
  splits nothing (the ``|`` split runs on what follows the block), but it
  is refused all the same, as a separator everywhere else in a dial string.
  A leading ``^^X`` changes the separator to ``X``, hence no ``^``.
- Each variable is then set by ``switch_channel_set_variable_var_check()``
  (``switch_channel.c``), which drops any value containing ``${`` with a
  CRIT "contains a variable" log, whichever layer it came from.  It is
  refused here so that it is reported rather than lost.  (The check is off
  when ``origination_nested_vars=true`` appears anywhere in the dial
  string; with ``${`` refused everywhere that changes nothing.)
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping, Tuple

__all__ = [
    "UnsafeValue",
    "build_api",
    "build_bgapi",
    "build_originate",
    "check_destination",
    "check_gateway",
    "check_number",
    "check_prefix",
    "check_var_name",
    "format_value",
]

# Explicit ASCII classes: \w and \d would also match non-ASCII letters and
# digits.
_NUMBER_CHARS = "[0-9A-Za-z+*#._-]"
_VAR_NAME_CHARS = "[A-Za-z0-9_]"
_GATEWAY_CHARS = "[A-Za-z0-9_.:@/+=-]"
_PREFIX_CHARS = "[0-9A-Za-z+*#]"
_EXTENSION_CHARS = "[0-9A-Za-z+*#_.:@-]"
_DIALPLAN_CHARS = "[A-Za-z0-9_]"
_CONTEXT_CHARS = "[A-Za-z0-9_.-]"
_API_COMMAND_CHARS = "[A-Za-z0-9_]"
_API_ARG_CHARS = "[A-Za-z0-9_.:@/+=-]"
# Always used with fullmatch, since "$" also matches before a trailing
# newline.
_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# Characters with a meaning in originate syntax or the ESL framing.  The
# comma and the space are not here: the comma is escaped and the space
# quoted rather than refused.
_FORBIDDEN_IN_VALUE = frozenset("{}[]<>|&'\"^\\")
_QUOTE = "'"
# Refused wherever they appear, whatever surrounds them (see the module
# docstring for where FreeSWITCH acts on them).
_ENTERPRISE_SEPARATOR = (
    ":_:", "FreeSWITCH's enterprise-originate separator: the switch would cut the "
    "whole dial string there and dial what follows")
_VARIABLE_REFERENCE = (
    "${", "FreeSWITCH refuses to set a variable whose value holds a ${...} "
    "reference and would silently drop it")
_UNDEF = "undef"
MAX_VALUE_LENGTH = 1024
_REPR_LIMIT = 80


class UnsafeValue(ValueError):
    """A piece of an ESL command was refused; nothing was sent."""


def _show(value: Any) -> str:
    # repr() escapes CR/LF, so a hostile value cannot forge log lines either.
    text = repr(value)
    if len(text) > _REPR_LIMIT:
        text = text[:_REPR_LIMIT] + "..."
    return text


def _describe(char: str) -> str:
    names = {
        " ": "a space",
        "\n": "a line feed (LF)",
        "\r": "a carriage return (CR)",
        "\t": "a tab",
    }
    if char in names:
        return names[char]
    code = ord(char)
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return f"control character U+{code:04X}"
    if 0xD800 <= code <= 0xDFFF:
        return f"unpaired surrogate U+{code:04X}"
    return repr(char)


class _Rule:
    """A whitelist for one kind of token, able to say what is wrong with it."""

    def __init__(self, what: str, chars: str, min_len: int, max_len: int, *,
                 allow_int: bool = False) -> None:
        self.what = what
        self.char = re.compile(chars)
        self.whole = re.compile(f"{chars}{{{min_len},{max_len}}}")
        self.max_len = max_len
        self.allow_int = allow_int

    def __call__(self, value: Any) -> str:
        if self.allow_int and isinstance(value, int) and not isinstance(value, bool):
            value = int.__repr__(value)
        if not isinstance(value, str):
            kinds = "a string or an int" if self.allow_int else "a string"
            raise UnsafeValue(
                f"{self.what} {_show(value)}: expected {kinds}, got "
                f"{type(value).__name__}")
        # A str subclass could override formatting; keep only the characters.
        value = str.__str__(value)
        if self.whole.fullmatch(value):
            _refuse_sequences(self.what, value, _ENTERPRISE_SEPARATOR)
            return value
        if not value:
            raise UnsafeValue(f"{self.what} {_show(value)}: is empty")
        for char in value:
            if not self.char.fullmatch(char):
                raise UnsafeValue(
                    f"{self.what} {_show(value)}: contains {_describe(char)}")
        raise UnsafeValue(
            f"{self.what} {_show(value)}: longer than {self.max_len} characters")


_number = _Rule("number", _NUMBER_CHARS, 1, 64, allow_int=True)
_var_name = _Rule("variable name", _VAR_NAME_CHARS, 1, 128)
_gateway = _Rule("gateway", _GATEWAY_CHARS, 1, 256)
_dial_suffix = _Rule("dial string after ${destination_number}", _GATEWAY_CHARS, 0, 256)
_prefix = _Rule("prefix", _PREFIX_CHARS, 0, 32, allow_int=True)
_extension = _Rule("extension", _EXTENSION_CHARS, 1, 128, allow_int=True)
_dialplan = _Rule("dialplan", _DIALPLAN_CHARS, 1, 64)
_context = _Rule("context", _CONTEXT_CHARS, 1, 128)
_api_command = _Rule("api command", _API_COMMAND_CHARS, 1, 64)


def _refuse_sequences(what: str, text: str, *sequences: Tuple[str, str]) -> None:
    for sequence, why in sequences:
        if sequence in text:
            raise UnsafeValue(f"{what} {_show(text)}: contains {sequence!r} ({why})")


def check_number(number: Any) -> str:
    """A dialled number: digits, letters and ``+*#._-``, 1-64 characters."""
    return _number(number)


def check_var_name(name: Any) -> str:
    return _var_name(name)


def check_gateway(gateway: Any) -> str:
    """A dial-string prefix such as ``sofia/gateway/gw1/`` or ``user/``."""
    return _gateway(gateway)


# mod_cti's line dialstring names the number's place with this; FreeSWITCH's
# own ${...} anywhere else would be expanded by the switch, so it is refused.
DESTINATION_PLACEHOLDER = "${destination_number}"


def split_dialstring(dialstring: Any) -> Tuple[str, str]:
    """A mod_cti dial string as (before the number, after it), each checked like a gateway.

    ``sofia/gateway/ims/${destination_number}`` -> ("sofia/gateway/ims/", "");
    ``loopback/${destination_number}/default`` -> ("loopback/", "/default").
    The number itself is checked and put in its place when the call is built.
    """
    if not isinstance(dialstring, str):
        raise UnsafeValue(f"dialstring {_show(dialstring)}: expected a string, got {type(dialstring).__name__}")
    if dialstring.count(DESTINATION_PLACEHOLDER) != 1:
        raise UnsafeValue(f"dialstring {_show(dialstring)}: must hold {DESTINATION_PLACEHOLDER} exactly once")
    before, _, after = dialstring.partition(DESTINATION_PLACEHOLDER)
    try:
        return _gateway(before), _dial_suffix(after)
    except UnsafeValue as exc:
        raise UnsafeValue(f"dialstring {_show(dialstring)}: {exc}") from None


def check_prefix(prefix: Any) -> str:
    """Digits put in front of the number; may be empty."""
    return _prefix(prefix)


def check_destination(extension: Any, dialplan: Any, context: Any) -> Tuple[str, str, str]:
    checked = (_extension(extension), _dialplan(dialplan), _context(context))
    for rule, value in zip((_extension, _dialplan, _context), checked):
        if value.lower() == _UNDEF:
            raise UnsafeValue(
                f"{rule.what} {_show(value)}: FreeSWITCH's originate command takes "
                f"{_UNDEF!r} for a missing argument")
    return checked


def _value_text(name: str, value: Any) -> str:
    # bool before int: bool is an int subclass and must read true/false.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnsafeValue(
                f"variable {name!r} value {_show(value)}: not a finite number")
        return float.__repr__(value)
    if isinstance(value, str):
        return str.__str__(value)
    raise UnsafeValue(
        f"variable {name!r} value {_show(value)}: unsupported type "
        f"{type(value).__name__} (expected str, bool, int or float)")


def format_value(name: str, value: Any) -> str:
    """The text of one ``{name=value}`` channel variable value.

    Commas are escaped; a value holding a space is put in single quotes.
    """
    name = check_var_name(name)
    text = _value_text(name, value)
    what = f"variable {name!r} value"
    if len(text) > MAX_VALUE_LENGTH:
        raise UnsafeValue(f"{what} {_show(text)}: longer than {MAX_VALUE_LENGTH} characters")
    # Before the character loop, which would only name the '{'.
    _refuse_sequences(what, text, _ENTERPRISE_SEPARATOR, _VARIABLE_REFERENCE)
    for char in text:
        code = ord(char)
        # C1 controls and lone surrogates are refused too: the former include
        # NEL, the latter cannot be encoded to UTF-8 for the socket.
        if (char in _FORBIDDEN_IN_VALUE or code < 0x20 or 0x7F <= code <= 0x9F
                or 0xD800 <= code <= 0xDFFF):
            raise UnsafeValue(f"{what} {_show(text)}: contains {_describe(char)}")
    if text != text.strip(" "):
        raise UnsafeValue(
            f"{what} {_show(text)}: starts or ends with a space (FreeSWITCH trims "
            f"it when it splits the variable block, so it would not arrive)")
    text = text.replace(",", "\\,")
    if " " in text:
        # Without the quotes the space would end the originate's first
        # argument; the switch drops them before reading the block.
        return _QUOTE + text + _QUOTE
    return text


def build_originate(variables: Mapping[str, Any], gateway: str, prefix: str,
                    number: str, extension: str, dialplan: str, context: str, suffix: str = "") -> str:
    """``originate {k=v,...}<gateway><prefix><number><suffix> <extension> <dialplan> <context>``.

    ``suffix`` is what a line's dial string puts after the number (mod_cti's
    ``loopback/${destination_number}/default``)."""
    if not isinstance(variables, Mapping):
        raise UnsafeValue(
            f"variables {_show(variables)}: expected a mapping, got "
            f"{type(variables).__name__}")
    pairs = [f"{check_var_name(name)}={format_value(name, value)}"
             for name, value in variables.items()]
    dial = check_gateway(gateway) + check_prefix(prefix) + check_number(number) + _dial_suffix(suffix)
    # Each piece was checked alone; the separator could also straddle two.
    _refuse_sequences("dial string", dial, _ENTERPRISE_SEPARATOR)
    extension, dialplan, context = check_destination(extension, dialplan, context)
    head = "{" + ",".join(pairs) + "}" if pairs else ""
    return f"originate {head}{dial} {extension} {dialplan} {context}"


def _check_command(command: Any) -> str:
    if not isinstance(command, str):
        raise UnsafeValue(
            f"command {_show(command)}: expected a string, got {type(command).__name__}")
    command = str.__str__(command)
    if not command.strip():
        raise UnsafeValue(f"command {_show(command)}: is empty")
    for char in command:
        code = ord(char)
        # A CR or LF would end the ESL command and start a forged one.
        if code < 0x20 or code == 0x7F:
            raise UnsafeValue(f"command {_show(command)}: contains {_describe(char)}")
    return command


def build_bgapi(command: str, job_uuid: str) -> str:
    """``bgapi <command>`` with a ``Job-UUID`` header; no trailing blank line."""
    command = _check_command(command)
    if not isinstance(job_uuid, str) or not _UUID_RE.fullmatch(job_uuid):
        raise UnsafeValue(
            f"job_uuid {_show(job_uuid)}: not a canonical lowercase UUID "
            f"(8-4-4-4-12 hex digits)")
    return f"bgapi {command}\nJob-UUID: {job_uuid}"


def build_api(command: str, *args: Any) -> str:
    """``api <command> <args...>`` for commands the daemon itself chooses."""
    parts = [_api_command(command)]
    for i, arg in enumerate(args):
        parts.append(_Rule(f"api argument {i}", _API_ARG_CHARS, 1, 256,
                           allow_int=True)(arg))
    return "api " + " ".join(parts)
