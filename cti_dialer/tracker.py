"""Following calls from the moment a number is claimed until its end is decided.

``CallTracker`` owns every number this host has taken: it marks them sent,
writes their originates, follows their events, fails over and backs off when
the switch throttles (``failover.Failover``), and hands each end to the
result writer (``endings.Endings``). Dispatchers
decide *what* to claim; this module moves each claim through the lifecycle
table (``lifecycle.py``), which lets it end exactly once: dialed and
recorded, or back where it came from. Configuration comes from the catalog
(read-only); a freed slot is announced through ``runtime.Wakeups``.
"""
import collections
import datetime
import logging
import time
import uuid as uuidlib
from typing import Dict, List

import gevent
import gevent.queue

from . import model, originate, outcome, redial
from .claim import Claim, Kind
from .endings import Endings, _next_midnight
from .esl import Answered, CallcenterInfo, Disconnected, EslError, EslNotSent, HungUp, JobResult, SwitchShutdown
from .failover import Failover
from .lifecycle import ON_THE_SWITCH, RECOVERY, ClaimEvent, ClaimState
from .outcome import Attempt, Verdict
from .runtime import REDIS_ERRORS

log = logging.getLogger("cti_dialer")

# Records whose outcome was decided before the result was written: the result they get.
DECIDED = {
    ClaimState.EXPIRED: (outcome.CAUSE_EXPIRED, Verdict.DROPPED),
    ClaimState.DROPPED: (outcome.CAUSE_NO_LINE, Verdict.DROPPED),
    ClaimState.REJECTED: (outcome.CAUSE_REJECTED, Verdict.REJECTED),
}
# After "-ERR CAUSE" from originate, how long to wait for the channel's
# CHANNEL_HANGUP_COMPLETE: with a channel, DESTINATION_OUT_OF_ORDER is the far
# end's answer, without one it is FreeSWITCH's throttle.
JOB_ERROR_GRACE = 0.25
# An in-flight record nobody follows, older than this, was stranded by a lost
# Redis reply; the sweep settles it as recovery at start would.
STRANDED_AFTER = 120.0


class CallTracker(Endings, Failover):
    def __init__(self, *, config, host, store, esl, catalog, writer, wakeups, health, budget, latency=None,
                 pacer=None):
        self.config = config
        self.host = host
        self.store = store
        self.esl = esl
        self.catalog = catalog              # source_of(claim), line(name), candidates(source, first group)
        self.writer = writer
        self.wakeups = wakeups
        self.health = health
        self.stopping = health.stopping
        self.latency = latency              # histogram: originate written -> BACKGROUND_JOB
        self.events = gevent.queue.Queue()
        self.claims: Dict[str, Claim] = {}
        self.by_uuid: Dict[str, Claim] = {}
        self.active = collections.Counter()
        self.stats = collections.defaultdict(collections.Counter)
        self.last_error: Dict[str, str] = {}
        self.budget = budget                # pacing.SendBudget: how fast originates may go
        self.pacer = pacer                  # pacer.Pacer: paced tasks' queue events and measures (or None)
        self._helpers = set()
        self._switch_stopping = False       # SHUTDOWN heard, connection not closed yet

    # --- bookkeeping ------------------------------------------------------------------

    def _track(self, claim):
        self.claims[claim.claim_id] = claim
        self.by_uuid[claim.attempt.uuid] = claim
        self.active[claim.owner] += 1

    def _untrack(self, claim):
        if self.claims.pop(claim.claim_id, None) is None:
            return
        if claim.attempt is not None and self.by_uuid.get(claim.attempt.uuid) is claim:
            del self.by_uuid[claim.attempt.uuid]
        if self.active[claim.owner] > 0:
            self.active[claim.owner] -= 1
        if not self.active[claim.owner]:
            del self.active[claim.owner]
        self.wakeups.slot_freed(claim.owner, claim.kind == Kind.SCHEDULE)

    def _spawn(self, fn, *args):
        """A helper greenlet that can never leave its claim stranded in memory."""
        def guarded():
            try:
                fn(*args)
            except Exception:
                claim = args[0]
                log.exception("following %s failed; its number goes back to be dialed", claim.claim_id)
                if claim.may(ClaimEvent.REQUEUE):
                    self.requeue(claim)
        return self._spawn_plain(guarded)

    def _spawn_plain(self, fn, *args):
        """A helper greenlet that a stop waits for (join_helpers)."""
        g = gevent.spawn(fn, *args)
        self._helpers.add(g)
        g.link(self._helpers.discard)
        return g

    def _note_unrung(self, claim, att):
        if claim.attempt is not att or claim.state not in ON_THE_SWITCH:
            return
        try:
            # Acts only while the record is still there and ours: a result
            # written meanwhile is never undone.
            self.store.update_inflight(claim.claim_id, claim.to_record(ClaimState.PARKED), expected_uuid=att.uuid)
        except REDIS_ERRORS:
            pass

    def join_helpers(self, deadline: float):
        """Let failover and throttle helpers end (they requeue what they hold once stopping)."""
        for g in list(self._helpers):
            g.join(timeout=max(0.1, deadline - time.time()))

    def note(self, owner: str, counter: str):
        """Count something that happened to a source's numbers outside a call (status and metrics)."""
        self.stats[owner][counter] += 1

    def on_event(self, event):
        """ESL events arrive here straight from the connection (the reader greenlet)."""
        self.events.put_nowait(event)

    def on_switch_connected(self):
        if self.claims:
            gevent.spawn(self.reconcile)

    # --- sending ----------------------------------------------------------------------

    def command(self, source, claim, line):
        """A fresh attempt for the claim on ``line``; returns the bgapi text."""
        uuid = str(uuidlib.uuid4())
        claim.tries += 1
        claim.line = line.name
        claim.attempt = Attempt(uuid=uuid, line=line.name, group_index=claim.group, sent_at=time.time())
        # number < task@host < task@template < line (queue); number < config < line (schedule)
        variables = model.channel_variables(claim.entry.variables, *source.variable_layers(),
                                            line.variables, own={"origination_uuid": uuid})
        cmd = originate.build_originate(variables, line.gateway, line.prefix, claim.entry.number,
                                        source.extension, source.dialplan, source.context, line.suffix)
        return originate.build_bgapi(cmd, uuid)

    def start(self, source, claims: List[Claim]):
        """Build and send the originates of fresh claims; bad ones are rejected, orphans requeued."""
        ready, commands = [], {}
        for claim in claims:
            if claim.entry is None:
                try:
                    claim.entry = model.parse_number(claim.raw)
                except model.ModelError as exc:
                    self.reject(claim, str(exc))
                    continue
            if getattr(source, "callee", None) is not None and not self._in_callee_hours(source, claim):
                continue
            line = self.catalog.line(claim.line)
            if line is None:
                # The line went away between claim and send: nothing is
                # wrong with the number, so it goes back.
                claim.attempt = None
                self.requeue(claim, tracked=False)
                continue
            try:
                commands[claim.claim_id] = self.command(source, claim, line)
            except (model.ModelError, originate.UnsafeValue) as exc:
                self.reject(claim, str(exc))
                continue
            ready.append(claim)
        self.send(ready, commands)

    def _in_callee_hours(self, source, claim) -> bool:
        """Whether the task's calling hours are open where the callee is; if not, the number waits.

        A number the library cannot place is read in the dialer's own zone.
        """
        now = time.time()
        zones = source.callee.zones(claim.entry.number) or (getattr(self.config.dialer_timezone, "key", "UTC"),)
        if source.callee.is_open(zones, now):
            return True
        opens = source.callee.next_open(zones, now)
        if opens is None:
            self.reject(claim, "calling hours are never open in all %d zones the number may be in (%s)"
                        % (len(zones), ", ".join(zones[:5]) + (", ..." if len(zones) > 5 else "")))
            return False
        claim.attempt = None
        self.defer(claim, opens, "is outside its calling hours in %s" % ", ".join(zones[:3]), tracked=False)
        return False

    def send(self, claims: List[Claim], commands: Dict[str, str], fresh=True):
        """Mark the claims sent in Redis, then write their originates.

        ``fresh`` claims are new to this host; others (failover, throttle)
        are already tracked and only change uuid.
        """
        if not claims:
            return
        marks, counter_of = [], {}
        cap = self.config.dialer_daily_attempt_cap
        day = datetime.datetime.now(self.config.dialer_timezone).date().isoformat() if cap else ""
        for c in claims:
            if fresh and c.entry.id is not None and c.attempt_no == 1:
                c.seen = self.store.keys.seen(c.owner, c.entry.id)
            # A fresh claim is an attempt (a first call or a redial); a failover
            # or throttle re-send is another try of the same one.
            counter = self.store.keys.attempts(day, c.entry.number) if cap and fresh else None
            counter_of[c.claim_id] = counter
            marks.append((c.claim_id, c.entry.number, c.to_record(ClaimState.SENT), c.seen if fresh else None,
                          counter))
        try:
            statuses = self.store.mark_sent(marks, self.config.dialer_dedup_window, cap)
        except REDIS_ERRORS as exc:
            # Not marked, so nothing goes out: the numbers go back.
            log.warning("could not mark %d claim(s) sent (%s); requeueing them", len(claims), exc)
            for claim in claims:
                self.requeue(claim, tracked=not fresh)
            return
        replies = []
        for claim, status in zip(claims, statuses):
            if status == "lost":
                claim.attempt = None
                self._lose(claim, "before its originate", tracked=not fresh)
                continue
            if status == "capped":
                claim.attempt = None
                self.defer(claim, _next_midnight(self.config.dialer_timezone),
                           "had its %d attempt(s) for today" % cap, tracked=not fresh)
                continue
            if status != "ok":
                # Checked at the last moment: listed, or already taken by id.
                if not fresh:
                    self._untrack(claim)
                claim.attempt = None
                cause = outcome.CAUSE_DNC if status == "dnc" else outcome.CAUSE_DUPLICATE
                log.info("not dialing %s (%s %r): %s", claim.number, claim.label, claim.source_name, cause)
                self.finish(claim, cause, Verdict.DROPPED, tracked=False)
                continue
            claim.advance(ClaimEvent.SEND)
            if counter_of.get(claim.claim_id):
                claim.cap_key = counter_of[claim.claim_id]
            if fresh:
                self._track(claim)
            else:
                self.by_uuid[claim.attempt.uuid] = claim
            try:
                replies.append((claim.attempt.uuid, self.esl.send_async(commands[claim.claim_id])))
            except EslNotSent:
                # Not a byte was written: provably never dialed.
                self.requeue(claim)
                continue
            except EslError:
                pass    # unknown whether it went out: settled by reconcile after reconnect
            claim.sent += 1
            self.stats[claim.owner]["dialed"] += 1
            log.info("originate %s %s=%s line=%s uuid=%s attempt=%d try=%d", claim.number, claim.label,
                     claim.source_name, claim.line, claim.attempt.uuid, claim.attempt_no, claim.tries)
        if replies:
            # The switch's "+OK Job-UUID" replies come back while the
            # dispatcher goes on claiming; only a refusal means something.
            self._spawn_plain(self._await_replies, replies)

    def _await_replies(self, replies):
        for uuid, result in replies:
            try:
                text = self.esl.wait(result).headers.get("Reply-Text", "")
            except EslError:
                continue    # unknown whether it reached the switch: reconcile settles it
            if text.startswith("-ERR"):
                self.events.put_nowait(JobResult(uuid, text))


    # --- events -------------------------------------------------------------------------

    def event_loop(self):
        for event in self.events:
            try:
                self.handle(event)
            except Exception:
                log.exception("handling %r failed", event)

    def handle(self, event):
        """One event from the switch."""
        if isinstance(event, CallcenterInfo):
            if self.pacer is not None:
                self.pacer.on_callcenter(event, self.by_uuid)
            return
        if isinstance(event, JobResult):
            claim = self.by_uuid.get(event.job_uuid)
            if claim is None:
                return
            status, value = outcome.parse_job_body(event.body)
            att = claim.attempt
            att.job_done = True
            att.job_ok = status == "+OK"
            if self.latency is not None and att.sent_at:
                self.latency.observe(max(0.0, time.time() - att.sent_at))
            if att.job_ok:
                self.budget.accepted(time.time(), att.sent_at)
                if self.health.switch_fault:
                    log.info("FreeSWITCH accepts originates again")
                    self.health.switch_fault = ""
            else:
                att.job_cause = value
                att.refused_by_switch = outcome.is_switch_fault(event.body)
                if att.refused_by_switch:
                    att.job_cause = event.body.strip()[:200]
                elif att.hangup_cause is None and (value in outcome.ROUTE_CAUSES or value == outcome.THROTTLE_CAUSE):
                    # Nothing rings after a route failure or a refusal: say so
                    # in Redis now, not after the grace for a hangup, so a
                    # crash meanwhile puts the number back instead of UNKNOWN.
                    self._spawn_plain(self._note_unrung, claim, att)
                if att.hangup_cause is None:
                    gevent.spawn_later(JOB_ERROR_GRACE, self._attempt_over, claim, att)
                    return
        elif isinstance(event, Answered):
            claim = self.by_uuid.get(event.uuid)
            if claim is not None:
                claim.attempt.answered_at = event.ts
                if claim.may(ClaimEvent.ANSWER):
                    claim.advance(ClaimEvent.ANSWER)
                if self.pacer is not None:
                    self.pacer.on_answer(claim, self.catalog.source_of(claim), time.time())
                log.info("answered %s %s=%s uuid=%s", claim.number, claim.label, claim.source_name, event.uuid)
            return
        elif isinstance(event, SwitchShutdown):
            self._switch_stopping = True
            return
        elif isinstance(event, Disconnected):
            if self._switch_stopping:
                self._switch_stopping = False
                self._settle_unrung_at_shutdown()
            return
        elif isinstance(event, HungUp):
            claim = self.by_uuid.get(event.uuid)
            if claim is None:
                return
            att = claim.attempt
            att.hangup_cause, att.billsec, att.ended_at = event.cause, event.billsec, event.ts
            att.switch_started, att.switch_answered, att.switch_ended = event.started, event.answered_at, event.ended
            att.never_rang = event.second_leg_missing
            att.sip_code, att.q850 = event.sip_code, event.q850
            att.machine = outcome.is_machine(event.variables, self.config.dialer_machine_variables)
            if event.answered and att.answered_at is None:
                att.answered_at = event.ts - event.billsec
        else:
            return
        if claim.attempt.finished():
            self._attempt_over(claim, claim.attempt)

    def _settle_unrung_at_shutdown(self):
        """The switch stopped gracefully: originates that never got a channel go back, first in line.

        A stopping switch hangs up every channel it has, each with its
        CHANNEL_HANGUP_COMPLETE, before it closes the socket, and it accepts
        originates for a moment without ever running them. So once the
        connection closes after SHUTDOWN, an attempt with neither an accepted
        job nor a hangup never had a channel: it did not ring, and recording
        it UNKNOWN would lose the number.
        """
        unrung = [c for c in self.claims.values()
                  if c.state == ClaimState.SENT and c.attempt is not None and c.attempt.hangup_cause is None
                  and not c.attempt.job_ok and c.attempt.answered_at is None]
        for claim in unrung:
            self.requeue(claim)
        if unrung:
            log.warning("FreeSWITCH shut down: %d originate(s) it accepted but never ran go back to be dialed",
                        len(unrung))

    def _attempt_over(self, claim, att):
        """Act on an attempt's outcome; an attempt already acted on (or replaced) is left alone."""
        if claim.attempt is not att or claim.state not in ON_THE_SWITCH:
            return
        if att.refused_by_switch and att.hangup_cause is None:
            self._switch_refused(claim, att)
            return
        verdict = att.verdict()
        cause = att.cause()
        line = self.catalog.line(att.line)
        if line is not None and line.fault_threshold:
            worked = att.line_worked(line.fault_connect_time, time.time())
            if worked is not None:
                self._spawn_plain(self._report_line, line, worked, cause)
        if verdict == Verdict.THROTTLE:
            if self.budget.refused(time.time()):
                log.warning("FreeSWITCH throttling (DESTINATION_OUT_OF_ORDER without a channel): pausing %.1fs, "
                            "then at most %.1f originates/s", self.budget.pause, self.budget.rate)
            self.stats[claim.owner]["throttled"] += 1
            source = self.catalog.source_of(claim)
            if source is not None and source.redial.rule(redial.THROTTLED) is not None:
                # The operator chose: a refusal ends the attempt and the
                # redial rule decides when (and whether) it is tried again.
                self.finish(claim, cause, verdict)
                return
        if verdict in (Verdict.ROUTE, Verdict.THROTTLE):
            claim.advance(ClaimEvent.PARK)
            self.by_uuid.pop(att.uuid, None)
            self._spawn(self._fail_over if verdict == Verdict.ROUTE else self._retry_throttled, claim, cause)
            return
        self.finish(claim, cause, verdict)


    def _lose(self, claim, when, tracked=True):
        log.warning("claim %s (%s, %s %r) is no longer this instance's (taken over by another daemon, settled "
                    "by a sweep, or this host's name is another instance's) %s: dropped, not dialed here",
                    claim.claim_id, claim.number, claim.label, claim.source_name, when)
        if claim.may(ClaimEvent.LOSE):
            claim.advance(ClaimEvent.LOSE)
        if tracked:
            self._untrack(claim)

    # --- reconciling with the switch -------------------------------------------------------

    def uuid_exists(self, uuid):
        return self.esl.api(originate.build_api("uuid_exists", uuid)).strip() == "true"

    def _followed(self, claim, att) -> bool:
        """Whether ``att`` is still the live attempt of a claim this host follows."""
        return (claim.claim_id in self.claims and claim.attempt is att and claim.state in ON_THE_SWITCH
                and self.by_uuid.get(att.uuid) is claim)

    def reconcile(self, older_than=0.0):
        """Ask FreeSWITCH about calls whose events we may have missed."""
        now = time.time()
        for claim in list(self.claims.values()):
            att = claim.attempt
            if att is None or att.sent_at > now - older_than or not self._followed(claim, att):
                continue        # between attempts (failover, throttle pause), or too young
            try:
                exists = self.uuid_exists(att.uuid)
            except EslError:
                return
            if exists:
                if not att.job_done:
                    att.job_done, att.job_ok = True, True
                continue
            if self._followed(claim, att):
                log.warning("lost track of call uuid=%s (%s %r): recorded as UNKNOWN, not redialed",
                            att.uuid, claim.kind.value, claim.source_name)
                self.finish(claim, outcome.CAUSE_UNKNOWN, Verdict.UNKNOWN)

    def recover(self, records, older_than=None):
        """Settle in-flight records nobody here follows (all of them at start).

        What each recorded state gets is ``lifecycle.RECOVERY``: never rung
        (claimed, parked): back to the queue or set; sent: followed when the
        call is still up, else recorded UNKNOWN (never redialed); decided
        (expired, dropped, rejected): the result is written.
        """
        counts = collections.Counter()
        skip = self.writer.pending_ids()
        now = time.time()
        for claim_id, rec in records.items():
            if claim_id in self.claims or claim_id in skip:
                continue
            if older_than is not None and float(rec.get("claimed_at") or 0) > now - older_than:
                continue
            try:
                state = ClaimState(rec.get("state"))
            except ValueError:
                state = ClaimState.SENT     # unreadable: it may have rung, so ask, never redial
            action = RECOVERY.get(state, "ask")
            if action == "requeue":
                counts["requeued" if self.store.requeue(claim_id, rec) == "ok" else "lost"] += 1
                continue
            claim = Claim.from_record(claim_id, {**rec, "state": state.value})
            if action == "settle":
                cause, verdict = DECIDED[state]
                if state == ClaimState.REJECTED:
                    self.reject(claim, rec.get("reason") or "rejected before a restart")
                else:
                    self.finish(claim, cause, verdict, tracked=False)
                counts["settled"] += 1
                continue
            claim.state = ClaimState.SENT
            if claim.attempt is None:
                claim.attempt = Attempt(uuid="", line=claim.line or "", group_index=claim.group, sent_at=0.0)
            if _is_uuid(claim.attempt.uuid) and self.uuid_exists(claim.attempt.uuid):
                claim.attempt.job_done, claim.attempt.job_ok = True, True
                self._track(claim)
                counts["followed"] += 1
            else:
                claim.attempt.job_done, claim.attempt.job_ok = True, False
                claim.attempt.job_cause = outcome.CAUSE_UNKNOWN
                self.finish(claim, outcome.CAUSE_UNKNOWN, Verdict.UNKNOWN, tracked=False)
                counts["unknown"] += 1
        return counts

    def renew_leases(self, now):
        """Keep the line slots of calls on the switch; a parked claim's lease is its failover's business
        (released and reserved again on the next group), so renewing it could bring back a freed one."""
        lost = self.store.renew_leases([(c.line, c.claim_id) for c in self.claims.values()
                                        if c.line and c.state in ON_THE_SWITCH], now, self.config.dialer_line_lease_ttl)
        for claim_id in lost:
            claim = self.claims.get(claim_id)
            if claim is not None:
                self._lose(claim, "while its call was followed")


def _is_uuid(value):
    try:
        return isinstance(value, str) and str(uuidlib.UUID(value)) == value
    except ValueError:
        return False
