"""How a claim's attempt ends: its result, its redial, or its number put back to wait.

Part of the call tracker (``tracker.CallTracker`` inherits it), kept apart
because ending is its own concern: every end goes through ``finish`` (one
result, the END transition first) or ``requeue`` (back where it came from,
unrung). The pure parts (the result record's fields, the next local
midnight) are module functions.
"""
import datetime
import logging
import time
import uuid as uuidlib

import orjson

from . import model, outcome, redial
from .claim import HomeType, Kind
from .lifecycle import ClaimEvent, ClaimState
from .outcome import Verdict
from .runtime import REDIS_ERRORS

log = logging.getLogger("cti_dialer")


class Endings:
    """The tracker's ends; it relies on the tracker's store, writer, catalog, stats, pacer and _untrack."""

    def requeue(self, claim, tracked=True):
        """Put a number that never rang back where it came from (written by the writer)."""
        claim.advance(ClaimEvent.REQUEUE)
        if claim.cap_key:
            # It never rang: not an attempt after all.
            key, claim.cap_key = claim.cap_key, None
            try:
                self.store.give_back_attempt(key)
            except REDIS_ERRORS as exc:
                log.warning("could not give back the daily attempt of %s (%s): it counts", claim.number, exc)
        self.writer.requeue(claim.claim_id, claim.to_record(ClaimState.CLAIMED))
        if tracked:
            self._untrack(claim)


    def defer(self, claim, until, why, tracked=True):
        """A number that may not be dialed now waits in Redis until ``until``, in one atomic step.

        A queue number goes to its task's redial set (due numbers there are
        taken before the queue), a schedule member back to the schedule set,
        each scored ``until``; neither counts as an attempt. A schedule member
        whose ``expires`` comes first is dropped as expired instead.
        """
        if claim.kind == Kind.SCHEDULE:
            if claim.expires and until > claim.expires:
                log.info("not dialing %s (%s %r): it %s and expires before %s", claim.number, claim.label,
                         claim.source_name, why, time.strftime("%Y-%m-%d %H:%M", time.localtime(until)))
                self.finish(claim, outcome.CAUSE_EXPIRED, Verdict.DROPPED, tracked=tracked)
                return
        elif claim.home_type != HomeType.SORTED_SET:
            claim.home_key, claim.home_type = self.store.keys.retries(claim.source_name), HomeType.SORTED_SET
            claim.home_raw = orjson.dumps({"raw": claim.raw.decode("utf-8", "surrogateescape"),
                                           "attempt": claim.attempt_no, "done": claim.done,
                                           "id": str(uuidlib.uuid4())})
        claim.score = until
        log.info("%s (%s %r) %s: waits in Redis until %s", claim.number, claim.label, claim.source_name, why,
                 time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(until)))
        self.stats[claim.owner]["deferred"] += 1
        self.requeue(claim, tracked=tracked)


    def reject(self, claim, reason):
        """Bad input found after the claim: rejected record plus a REJECTED_INPUT result."""
        # Reasons quote the bad value; it may be huge, and the reason also
        # lands in the status record (last_error).
        reason = model.raw_repr(reason, 500)
        log.error("rejected number entry from %s (%s %r): %s", claim.home_key,
                  "task" if claim.kind == Kind.QUEUE else "schedule config", claim.source_name, reason)
        self.last_error[claim.owner] = "rejected number entry: %s" % reason
        rejected = {"ts": time.time(), "host": self.host, "kind": "number", "name": claim.source_name,
                    "source": claim.home_key, "raw": model.raw_repr(claim.raw), "reason": reason}
        self.finish(claim, outcome.CAUSE_REJECTED, Verdict.REJECTED, tracked=False, rejected=rejected)


    def finish(self, claim, cause, verdict, tracked=True, rejected=None):
        """End the attempt: result, counters and, when the strategy says so, a durable redial.

        The END transition comes first: a claim that already ended raises
        lifecycle.IllegalTransition here, before a second result exists.
        """
        claim.advance(ClaimEvent.END)
        ts = time.time()
        source = self.catalog.source_of(claim)
        result = result_record(self.host, claim, source, cause, verdict, ts)
        if rejected is not None:
            result["error"] = rejected["reason"]
        if self.pacer is not None:
            self.pacer.on_finish(claim, source, verdict, result, ts)
        klass = redial.outcome_class(cause, verdict)
        decision = self._redial_decision(claim, source, klass, verdict, ts)
        retry = None
        if decision is not None:
            due, counted_as = decision
            retry = self._redial_member(claim, counted_as, due)
            result.update(next_due=due, redial_class=counted_as)
            log.info("redial of %s (%s %r) after %s at %s, attempt %d", claim.number, claim.kind.value,
                     claim.source_name, cause, time.strftime("%H:%M:%S", time.localtime(due)), claim.attempt_no + 1)
        counts = {"results": 1, "originates": claim.sent,
                  (verdict.value if verdict in _ANSWERS else "cause:" + cause): 1}
        if verdict not in (*_ANSWERS, Verdict.DROPPED, Verdict.REJECTED):
            counts["failed"] = 1
        if retry is not None:
            counts["redials_scheduled"] = 1
        self.writer.finish(claim.claim_id, claim.line, result, rejected,
                           (self.store.keys.counters(claim.owner), counts), retry)
        if tracked:
            self._untrack(claim)
        counters = self.stats[claim.owner]
        counters["last_end"] = int(ts)
        if verdict in _ANSWERS:
            counters[verdict.value] += 1        # "answered", or "machine": never a live answer
        elif verdict == Verdict.REJECTED:
            counters["rejected"] += 1
        else:
            counters["failed"] += 1
            counters["cause:" + cause] += 1
        att = claim.attempt
        log.info("call %s %s=%s line=%s uuid=%s attempt=%d cause=%s answered=%s billsec=%d",
                 claim.number, claim.label, claim.source_name, claim.line, att.uuid if att else "",
                 claim.attempt_no, cause, verdict == Verdict.ANSWERED, att.billsec if att else 0)


    def _redial_decision(self, claim, source, klass, verdict, now):
        """(due, done key) of the redial the task's strategy and its line group's rules call for, or None."""
        if source is None:
            return None
        group = None
        if claim.line and claim.group < len(source.line_groups):
            group = self.catalog.groups.get(source.line_groups[claim.group])
        att = claim.attempt
        facts = att.facts(now) if att is not None and att.sent_at and att.job_done else None
        return redial.decide_call(source.redial, group.redial if group is not None else redial.NO_GROUP_RULES,
                                  klass, verdict, facts, claim.done, now)


    def _redial_member(self, claim, klass, due):
        """(key, score, member) of the redial to schedule for this claim."""
        done = dict(claim.done)
        done[klass] = done.get(klass, 0) + 1
        if claim.kind == Kind.SCHEDULE:
            doc = model.loads(claim.raw)
            params = dict(doc.get("params") or {})
            params.update(attempt=claim.attempt_no + 1, redial_done=done, redial_id=str(uuidlib.uuid4()))
            doc["params"] = params
            return self.store.keys.schedule_numbers, due, orjson.dumps(doc)
        member = {"raw": claim.raw.decode("utf-8", "surrogateescape"), "attempt": claim.attempt_no + 1,
                  "done": done, "id": str(uuidlib.uuid4())}
        return self.store.keys.retries(claim.source_name), due, orjson.dumps(member)


def _next_midnight(tz) -> float:
    """The next local midnight in ``tz``, as unix time (the start of the next attempt-cap day)."""
    now = datetime.datetime.now(tz)
    tomorrow = (now + datetime.timedelta(days=1)).date()
    return datetime.datetime.combine(tomorrow, datetime.time(), tzinfo=tz).timestamp()


# Answered calls: by a person, or by a machine (counted apart, no failure).
_ANSWERS = (Verdict.ANSWERED, Verdict.MACHINE)


def result_record(host, claim, source, cause, verdict, ts):
    """The result record of an ended attempt (the stream's fields, documented in docs/redis.rst)."""
    att = claim.attempt
    group = source.line_groups[claim.group] if source is not None and claim.group < len(source.line_groups) else ""
    answered_at, ended, ring_time = att.times(ts) if att and att.sent_at else (None, ts, "")
    queue = source.number_queue if claim.kind == Kind.QUEUE and source is not None else claim.home_key
    return {
        "ts": ts, "host": host, "kind": claim.kind.value, "queue": queue, claim.label: claim.source_name,
        "number": claim.number, "id": claim.entry.id if claim.entry and claim.entry.id is not None else "",
        "number_variables": dict(claim.entry.variables) if claim.entry else {},
        "line": claim.line or "", "group_index": claim.group, "line_group": group,
        "uuid": att.uuid if att else "", "claim_id": claim.claim_id, "attempt": claim.attempt_no,
        "try": claim.tries, "cause": cause, "verdict": verdict.value, "answered": verdict == Verdict.ANSWERED,
        "machine": verdict == Verdict.MACHINE,
        "billsec": att.billsec if att else 0,
        "sip_code": att.sip_code if att and att.sip_code is not None else "",
        "q850": att.q850 if att and att.q850 is not None else "",
        "ring_time": ring_time, "claimed_at": claim.claimed_at,
        "sent_at": att.sent_at if att else "", "answered_at": answered_at or "", "ended_at": ended,
        **({"scheduled_at": claim.score, "expires": claim.expires} if claim.kind == Kind.SCHEDULE else {}),
    }
