"""Redial strategy: which outcome class an attempt ended in, and whether to try again.

Pure: the strategy comes from task or schedule config JSON, the decision
takes the clock as an argument.
"""
import dataclasses
from typing import Mapping, Optional, Tuple

from .outcome import Verdict

BUSY = "busy"
NO_ANSWER = "no_answer"
REJECTED = "rejected"
ROUTE_FAILURE = "route_failure"
THROTTLED = "throttled"
CLASSES = (BUSY, NO_ANSWER, REJECTED, ROUTE_FAILURE, THROTTLED)

# Hangup causes of callee outcomes that a redial may change.
CAUSE_CLASS = {
    "USER_BUSY": BUSY,
    "NO_ANSWER": NO_ANSWER,
    "NO_USER_RESPONSE": NO_ANSWER,
    # what FreeSWITCH reports when originate_timeout / leg_timeout expires
    "ORIGINATOR_CANCEL": NO_ANSWER,
    "ALLOTTED_TIMEOUT": NO_ANSWER,
    "PROGRESS_TIMEOUT": NO_ANSWER,
    "CALL_REJECTED": REJECTED,
    "FACILITY_REJECTED": REJECTED,
    "SUBSCRIBER_ABSENT": REJECTED,
    "INCOMING_CALL_BARRED": REJECTED,
    "USER_CHALLENGE": REJECTED,
}

MAX_COUNT = 100
MAX_INTERVAL = 30 * 86400


class RedialError(ValueError):
    """The redial param is malformed; the message says where."""


@dataclasses.dataclass(frozen=True)
class Rule:
    count: int          # retries allowed for this class (not counting the first attempt)
    interval: float     # seconds from the end of an attempt to its retry


@dataclasses.dataclass(frozen=True)
class Strategy:
    rules: Tuple[Tuple[str, Rule], ...] = ()

    def rule(self, outcome_class) -> Optional[Rule]:
        return dict(self.rules).get(outcome_class)

    def __bool__(self):
        return bool(self.rules)


NO_REDIAL = Strategy()


def parse(value, where="redial") -> Strategy:
    """``{"busy": {"count": 2, "interval": 300}, ...}`` into a Strategy; None means no redial."""
    if value is None:
        return NO_REDIAL
    if not isinstance(value, Mapping):
        raise RedialError("%s must be an object of outcome classes, not %r" % (where, value))
    rules = []
    for name, rule in value.items():
        if name not in CLASSES:
            raise RedialError("%s: unknown outcome class %r (known: %s)" % (where, name, ", ".join(CLASSES)))
        if not isinstance(rule, Mapping) or set(rule) - {"count", "interval"} or "count" not in rule:
            raise RedialError('%s.%s must be {"count": N, "interval": SECONDS}, not %r' % (where, name, rule))
        count, interval = rule["count"], rule.get("interval", 0)
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
            raise RedialError("%s.%s.count must be an integer 0..%d, not %r" % (where, name, MAX_COUNT, count))
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 <= interval <= MAX_INTERVAL:
            raise RedialError("%s.%s.interval must be seconds 0..%d, not %r" % (where, name, MAX_INTERVAL, interval))
        rules.append((name, Rule(count=count, interval=float(interval))))
    return Strategy(rules=tuple(sorted(rules)))


def outcome_class(cause: str, verdict: Verdict) -> Optional[str]:
    """The redial class of a finished attempt, or None when it is never redialed."""
    if verdict == Verdict.ROUTE:
        return ROUTE_FAILURE
    if verdict == Verdict.THROTTLE:
        return THROTTLED
    if verdict != Verdict.CALLEE:
        return None     # answered, unknown, dropped, rejected input: final
    return CAUSE_CLASS.get((cause or "").upper())


def decide(strategy: Strategy, klass: Optional[str], done: Mapping[str, int], now: float) -> Optional[float]:
    """When to dial again (unix time), or None for no redial.

    ``done`` counts the retries already made per class for this number.
    """
    if klass is None:
        return None
    rule = strategy.rule(klass)
    if rule is None or done.get(klass, 0) >= rule.count:
        return None
    return now + rule.interval
