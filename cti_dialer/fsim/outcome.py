"""What the simulated far end does with one originate."""
import dataclasses
import random
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple, Union

# Kinds that carry a fixed hangup cause; "hangup" and "fail" take theirs
# from the caller.
_FIXED_CAUSES = {
    "answer": "NORMAL_CLEARING",
    "busy": "USER_BUSY",
    "no_answer": "NO_ANSWER",
    "reject": "CALL_REJECTED",
    "stalled": "NO_ANSWER",
}
KINDS = tuple(_FIXED_CAUSES) + ("hangup", "fail")
# Kinds whose call ends with the far end's answer to the INVITE, so with a SIP code.
_REFUSED = ("busy", "no_answer", "reject", "hangup", "fail")


def _check_cause(cause: Any) -> str:
    if not isinstance(cause, str) or not cause:
        raise ValueError("cause must be a non-empty string, got %r" % (cause,))
    # The cause ends up verbatim in "-ERR <cause>\n" bodies and event headers;
    # a space or control character there would change how clients parse it.
    if any(c.isspace() or ord(c) < 0x20 for c in cause):
        raise ValueError("cause must not contain whitespace: %r" % (cause,))
    return cause


def _check_sip_code(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 699:
        raise ValueError("sip_code must be an integer from 100 to 699, got %r" % (value,))
    return value


def _check_ms(name: str, value: Any, allow_none: bool = False) -> Optional[int]:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError("%s must be a non-negative number of milliseconds, got %r" % (name, value))
    return int(value)


def _check_variables(value: Any) -> Tuple[Tuple[str, str], ...]:
    """Channel variables as (name, value) pairs, in the order they were given."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError("variables must be an object of names to values, got %r" % (value,))
    out = []
    for item in items:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ValueError("variables must be (name, value) pairs, got %r" % (item,))
        name, val = item
        # The name becomes an event header (variable_<name>); FreeSWITCH's own
        # variable names are letters, digits and underscores.
        if not isinstance(name, str) or not name or not all(c.isalnum() or c == "_" for c in name) \
                or not name.isascii():
            raise ValueError("a variable name must be letters, digits and underscores, got %r" % (name,))
        if not isinstance(val, str):
            raise ValueError("the value of variable %s must be a string, got %r" % (name, val))
        # Values are URL-encoded on the wire, but a control character still
        # breaks clients that log or split them by line.
        if any(ord(c) < 0x20 or ord(c) == 0x7f for c in val):
            raise ValueError("the value of variable %s must not contain control characters" % name)
        out.append((name, val))
    if len({n for n, _ in out}) != len(out):
        raise ValueError("a variable is given twice")
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A scripted result.

    ``channel`` False means the call fails before a channel exists (route
    failure): only the job result is produced, no channel events.
    ``hold_ms`` None keeps an answered call up until it is killed.
    ``cleared_at_answer``: the callee answers and hangs up at once, so the
    job result is ``-ERR NORMAL_CLEARING`` although CHANNEL_ANSWER was sent.
    Kind ``stalled``: the first leg comes up and then nothing happens until
    the originate timeout, which ends it with NO_ANSWER (what the switch does
    when it throttles the second leg of a two-leg endpoint).

    ``sip_code`` (100..699, kinds busy, no_answer, reject, hangup and fail
    with a channel) is the far end's final response to the INVITE, reported
    as ``variable_sip_term_status`` in CHANNEL_HANGUP and
    CHANNEL_HANGUP_COMPLETE of a ``sofia/`` channel (never a loopback one),
    next to ``variable_sip_term_cause`` (the cause's number). None takes the
    usual code of the cause: USER_BUSY 486, NO_ANSWER 480, NO_USER_RESPONSE
    408, CALL_REJECTED 603, UNALLOCATED_NUMBER 404, NORMAL_TEMPORARY_FAILURE
    503 and so on (``events.SIP_STATUS``); a cause without one reports none.
    An answered call the far end hangs up reports 200. A call the switch
    ends itself (originate timeout, uuid_kill, hupall, shutdown) reports
    none, as FreeSWITCH does. ``ring_ms`` 0 fails the call as soon as its
    channel exists; more rings first, and the CDR's duration counts it.
    In a JSON script: ``{"kind": "fail", "cause": "NORMAL_TEMPORARY_FAILURE",
    "channel": true, "ring_ms": 0, "sip_code": 503}``.

    ``variables`` (answered calls only) are channel variables the far end's
    handling sets after the answer, as an answering-machine detector does
    (``{"amd_result": "MACHINE"}``, ``{"avmd_detect": "TRUE"}``): they are
    reported as ``variable_<name>`` in CHANNEL_HANGUP and
    CHANNEL_HANGUP_COMPLETE (and in a queue's ``callcenter::info`` events),
    never in CHANNEL_CREATE or CHANNEL_ANSWER. Kept as ``(name, value)``
    pairs so an Outcome stays hashable.
    """

    kind: str = "answer"
    cause: str = "NORMAL_CLEARING"
    ring_ms: int = 0
    hold_ms: Optional[int] = 0
    channel: bool = True
    cleared_at_answer: bool = False
    sip_code: Optional[int] = None
    variables: Tuple[Tuple[str, str], ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError("unknown outcome kind %r (expected one of %s)" % (self.kind, ", ".join(KINDS)))
        _check_cause(self.cause)
        _check_ms("ring_ms", self.ring_ms)
        _check_ms("hold_ms", self.hold_ms, allow_none=True)
        if self.kind == "answer" and not self.channel:
            raise ValueError("an answered call needs a channel")
        if self.cleared_at_answer and self.kind != "answer":
            raise ValueError("only an answered call can be cleared at the answer")
        _check_sip_code(self.sip_code)
        if self.sip_code is not None:
            if self.kind not in _REFUSED:
                raise ValueError("only a refused call has a sip_code (kind %r)" % (self.kind,))
            # A failure before the channel exists sends no INVITE, so nothing answers it.
            if not self.channel:
                raise ValueError("a sip_code needs a channel (channel=True)")
        object.__setattr__(self, "variables", _check_variables(self.variables))
        if self.variables and self.kind != "answer":
            raise ValueError("only an answered call has variables (kind %r)" % (self.kind,))

    # --- factories ---------------------------------------------------------

    @classmethod
    def answer(cls, ring_ms: int = 0, hold_ms: Optional[int] = 0,
               variables: Optional[Mapping[str, str]] = None) -> "Outcome":
        return cls("answer", "NORMAL_CLEARING", _check_ms("ring_ms", ring_ms),
                   _check_ms("hold_ms", hold_ms, allow_none=True), True,
                   variables=_check_variables(variables))

    @classmethod
    def cleared(cls, ring_ms: int = 0) -> "Outcome":
        """Answered, then hung up at once: CHANNEL_ANSWER, yet ``-ERR NORMAL_CLEARING``."""
        return cls("answer", "NORMAL_CLEARING", _check_ms("ring_ms", ring_ms), 0, True, True)

    @classmethod
    def stalled(cls) -> "Outcome":
        return cls("stalled", "NO_ANSWER", 0, 0, True)

    @classmethod
    def busy(cls, ring_ms: int = 0, sip_code: Optional[int] = None) -> "Outcome":
        return cls("busy", "USER_BUSY", _check_ms("ring_ms", ring_ms), 0, True, sip_code=sip_code)

    @classmethod
    def no_answer(cls, ring_ms: int = 0, sip_code: Optional[int] = None) -> "Outcome":
        return cls("no_answer", "NO_ANSWER", _check_ms("ring_ms", ring_ms), 0, True, sip_code=sip_code)

    @classmethod
    def reject(cls, ring_ms: int = 0, sip_code: Optional[int] = None) -> "Outcome":
        return cls("reject", "CALL_REJECTED", _check_ms("ring_ms", ring_ms), 0, True, sip_code=sip_code)

    @classmethod
    def hangup(cls, cause: str, ring_ms: int = 0, sip_code: Optional[int] = None) -> "Outcome":
        return cls("hangup", _check_cause(cause), _check_ms("ring_ms", ring_ms), 0, True, sip_code=sip_code)

    @classmethod
    def fail(cls, cause: str, channel: bool = False, ring_ms: int = 0,
             sip_code: Optional[int] = None) -> "Outcome":
        return cls("fail", _check_cause(cause), _check_ms("ring_ms", ring_ms), 0, bool(channel),
                   sip_code=sip_code)

    # --- JSON form (CLI scripts) -------------------------------------------

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Outcome":
        if not isinstance(d, dict):
            raise ValueError("an outcome must be a JSON object, got %r" % (d,))
        known = {"kind", "cause", "ring_ms", "hold_ms", "channel", "cleared_at_answer", "sip_code",
                 "variables"}
        extra = set(d) - known
        if extra:
            raise ValueError("unknown outcome field(s): %s" % ", ".join(sorted(extra)))
        kind = d.get("kind", "answer")
        ring_ms = d.get("ring_ms", 0)
        sip_code = d.get("sip_code")
        if sip_code is not None and kind not in _REFUSED:
            raise ValueError("only a refused call has a sip_code (kind %r)" % (kind,))
        variables = d.get("variables")
        if variables is not None:
            if not isinstance(variables, dict):
                raise ValueError("variables must be an object of names to values, got %r" % (variables,))
            if kind != "answer" or d.get("cleared_at_answer"):
                raise ValueError("only an answered call has variables (kind %r)" % (kind,))
        cleared = d.get("cleared_at_answer", False)
        if not isinstance(cleared, bool):
            raise ValueError("cleared_at_answer must be true or false, got %r" % (cleared,))
        if cleared:
            if kind != "answer":
                raise ValueError("only an answered call can be cleared at the answer")
            return cls.cleared(ring_ms=ring_ms)
        if kind == "answer":
            return cls.answer(ring_ms=ring_ms, hold_ms=d.get("hold_ms", 0), variables=variables)
        if kind == "stalled":
            return cls.stalled()
        if kind in ("busy", "no_answer", "reject"):
            return getattr(cls, kind)(ring_ms=ring_ms, sip_code=sip_code)
        if kind == "hangup":
            return cls.hangup(d.get("cause"), ring_ms=ring_ms, sip_code=sip_code)
        if kind == "fail":
            channel = d.get("channel", False)
            if not isinstance(channel, bool):
                raise ValueError("channel must be true or false, got %r" % (channel,))
            return cls.fail(d.get("cause"), channel=channel, ring_ms=ring_ms, sip_code=sip_code)
        raise ValueError("unknown outcome kind %r (expected one of %s)" % (kind, ", ".join(KINDS)))


class OutcomeMix:
    """Weighted outcomes, one drawn per originate: ``OutcomeMix([(3, Outcome.answer()),
    (7, Outcome.no_answer(ring_ms=20000))], seed=1)``.

    Usable wherever an Outcome is (``default_outcome``, ``script_gateway``,
    ``script_number``). The draws come from the mix's own random source, so
    the same seed and the same order of originates give the same outcomes
    whatever else the simulator draws. A retried originate keeps its draw.
    In a JSON script: ``{"mix": [[3, {...outcome...}], [7, {...}]], "seed": 1}``.
    """

    def __init__(self, choices: Iterable[Tuple[Union[int, float], Outcome]], seed: Optional[int] = 0):
        pairs = []
        for item in choices:
            if not isinstance(item, (list, tuple)) or len(item) != 2:
                raise ValueError("a mix takes (weight, Outcome) pairs, got %r" % (item,))
            weight, outcome = item
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
                raise ValueError("a weight must be a non-negative number, got %r" % (weight,))
            if not isinstance(outcome, Outcome):
                raise TypeError("a mix holds Outcomes, got %r" % (outcome,))
            pairs.append((float(weight), outcome))
        total = sum(w for w, _ in pairs)
        if not pairs or total <= 0:
            raise ValueError("a mix needs at least one outcome with a positive weight")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("seed must be an integer or None, got %r" % (seed,))
        self.choices: Tuple[Tuple[float, Outcome], ...] = tuple(pairs)
        self.seed = seed
        self._total = total
        self._rng = random.Random(seed)

    def draw(self) -> Outcome:
        point = self._rng.random() * self._total
        for weight, outcome in self.choices:
            point -= weight
            if point < 0:
                return outcome
        # Rounding can leave the point at the very top: the last weighted one.
        return next(o for w, o in reversed(self.choices) if w > 0)

    def __repr__(self):
        return "OutcomeMix(%r, seed=%r)" % (list(self.choices), self.seed)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "OutcomeMix":
        if not isinstance(d, dict):
            raise ValueError("a mix must be a JSON object, got %r" % (d,))
        extra = set(d) - {"mix", "seed"}
        if extra:
            raise ValueError("unknown mix field(s): %s" % ", ".join(sorted(extra)))
        entries = d.get("mix")
        if not isinstance(entries, list):
            raise ValueError("mix must be a list of [weight, outcome] pairs")
        pairs = []
        for entry in entries:
            if not isinstance(entry, list) or len(entry) != 2:
                raise ValueError("mix entries must be [weight, outcome] pairs, got %r" % (entry,))
            pairs.append((entry[0], Outcome.from_dict(entry[1])))
        return cls(pairs, seed=d.get("seed", 0))


AnyOutcome = Union[Outcome, OutcomeMix]


def outcome_from_dict(d: Dict[str, Any]) -> AnyOutcome:
    """An outcome or, when the object has ``mix``, an OutcomeMix (JSON scripts)."""
    if isinstance(d, dict) and "mix" in d:
        return OutcomeMix.from_dict(d)
    return Outcome.from_dict(d)
