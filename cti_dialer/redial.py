"""Redial strategy: which outcome class an attempt ended in, and whether to try again.

Pure: the strategy comes from task or schedule config JSON, the decision
takes the clock as an argument.
"""
import dataclasses
from typing import FrozenSet, Mapping, Optional, Tuple

from .outcome import CallFacts, Verdict

BUSY = "busy"
NO_ANSWER = "no_answer"
REJECTED = "rejected"
ROUTE_FAILURE = "route_failure"
THROTTLED = "throttled"
MACHINE = "machine"         # answered by an answering machine (the seed 002's answerMash)
CLASSES = (BUSY, NO_ANSWER, REJECTED, ROUTE_FAILURE, THROTTLED, MACHINE)

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
        rules.append((name, Rule(count=count, interval=_seconds(interval, "%s.%s.interval" % (where, name)))))
    return Strategy(rules=tuple(sorted(rules)))


def outcome_class(cause: str, verdict: Verdict) -> Optional[str]:
    """The redial class of a finished attempt, or None when it is never redialed."""
    if verdict == Verdict.ROUTE:
        return ROUTE_FAILURE
    if verdict == Verdict.THROTTLE:
        return THROTTLED
    if verdict == Verdict.MACHINE:
        return MACHINE
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


# --- line-group redial rules (mod_cti's redialer_count / redialer_rule / no_redialer_rule) ---

# The key under which group redials are counted in a number's ``done`` map,
# beside the task strategy's classes (it is none of CLASSES).
GROUP = "group"


@dataclasses.dataclass(frozen=True)
class HangupRule:
    """One rule object: every field it gives must match (a list: the call's value is in it;
    duration and bill: the call's value is at most that many seconds)."""
    sip_codes: FrozenSet[int] = frozenset()
    q850: FrozenSet[int] = frozenset()
    duration: Optional[float] = None
    bill: Optional[float] = None

    def matches(self, call: CallFacts) -> bool:
        if self.sip_codes and call.sip_code not in self.sip_codes:
            return False
        if self.q850 and call.q850 not in self.q850:
            return False
        if self.duration is not None and call.duration > self.duration:
            return False
        return self.bill is None or call.billsec <= self.bill


@dataclasses.dataclass(frozen=True)
class GroupRules:
    count: int = 0                          # redialer_count: group redials allowed per number
    redial: Tuple[HangupRule, ...] = ()     # redialer_rule
    no_redial: Tuple[HangupRule, ...] = ()  # no_redialer_rule

    def __bool__(self):
        return bool(self.redial or self.no_redial)


NO_GROUP_RULES = GroupRules()
_RULE_FIELDS = {"hangup_sipcode", "hangup_cause", "duration", "bill"}


def _codes(value, where, low, high):
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value:
        raise RedialError("%s must be a list of numbers, not %r" % (where, value))
    out = set()
    for item in value:
        try:
            code = int(item) if not isinstance(item, bool) and str(item).strip().isdigit() else None
        except (TypeError, ValueError):
            code = None
        if code is None or not low <= code <= high:
            raise RedialError("%s: %r is not a number %d..%d" % (where, item, low, high))
        out.add(code)
    return frozenset(out)


def _seconds(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or not 0 <= value <= MAX_INTERVAL:
        raise RedialError("%s must be seconds 0..%d, not %r" % (where, MAX_INTERVAL, value))
    return float(value)


def _rules(value, where) -> Tuple[HangupRule, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, Mapping) else value
    if not isinstance(items, list):
        raise RedialError("%s must be a rule object or a list of them, not %r" % (where, value))
    out = []
    for i, rule in enumerate(items):
        at = "%s[%d]" % (where, i) if not isinstance(value, Mapping) else where
        if not isinstance(rule, Mapping):
            raise RedialError("%s must be an object with %s, not %r" % (at, ", ".join(sorted(_RULE_FIELDS)), rule))
        unknown = sorted(set(rule) - _RULE_FIELDS)
        if unknown:
            raise RedialError("%s: unknown fields %s (known: %s)" % (at, ", ".join(unknown),
                                                                     ", ".join(sorted(_RULE_FIELDS))))
        if not rule:
            # An empty rule matches every call: surely not what was meant.
            raise RedialError("%s is empty: give at least one of %s" % (at, ", ".join(sorted(_RULE_FIELDS))))
        out.append(HangupRule(
            sip_codes=_codes(rule["hangup_sipcode"], at + ".hangup_sipcode", 100, 699) if "hangup_sipcode" in rule
            else frozenset(),
            q850=_codes(rule["hangup_cause"], at + ".hangup_cause", 0, 999) if "hangup_cause" in rule else frozenset(),
            duration=_seconds(rule["duration"], at + ".duration") if "duration" in rule else None,
            bill=_seconds(rule["bill"], at + ".bill") if "bill" in rule else None))
    return tuple(out)


def parse_group_rules(fields: Mapping) -> GroupRules:
    """A line group's redialer_count, redialer_rule and no_redialer_rule."""
    count = fields.get("redialer_count", 0)
    if isinstance(count, str) and count.strip().isdigit():
        count = int(count)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
        raise RedialError("redialer_count must be an integer 0..%d, not %r" % (MAX_COUNT, count))
    rules = _rules(fields.get("redialer_rule"), "redialer_rule")
    if count and not rules:
        raise RedialError("redialer_count %d needs redialer_rule (which calls to redial)" % count)
    return GroupRules(count=count, redial=rules, no_redial=_rules(fields.get("no_redialer_rule"), "no_redialer_rule"))


# Verdicts whose attempt reached the switch and ended with a cause it gave:
# the only ones the group rules look at. UNKNOWN, DROPPED and REJECTED are
# never redialed, whatever a rule says.
_RULED = (Verdict.ANSWERED, Verdict.MACHINE, Verdict.CALLEE, Verdict.ROUTE)


def decide_call(strategy: Strategy, rules: GroupRules, klass: Optional[str], verdict: Verdict,
                call: Optional[CallFacts], done: Mapping[str, int], now: float) -> Optional[Tuple[float, str]]:
    """(when to dial again, the ``done`` key it counts under), or None.

    The group's rules come first: a call matching a no-redial rule is final
    (the task's strategy included); one matching a redial rule is redialed
    while the group's count allows, then never again by either. A call that
    matches none of them is the task strategy's to decide. A group redial
    waits the task strategy's interval for the call's class when the task
    has one, else it is due at once (still within the task's windows, pace
    and limits: it goes through the redial set like any other).
    """
    if rules and call is not None and verdict in _RULED:
        if any(rule.matches(call) for rule in rules.no_redial):
            return None
        if any(rule.matches(call) for rule in rules.redial):
            if done.get(GROUP, 0) >= rules.count:
                return None
            rule = strategy.rule(klass) if klass else None
            return now + (rule.interval if rule else 0.0), GROUP
    due = decide(strategy, klass, done, now)
    return None if due is None else (due, klass)
