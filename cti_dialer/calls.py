"""Following calls from the moment a number is claimed until its result is in Redis.

``Calls`` owns every number this host has taken: it marks them sent, writes
their originates, follows their events, fails over, backs off when the switch
throttles, and writes results and requeues in batches that survive a Redis
outage. The daemon decides *what* to claim; this module makes sure that each
claim ends exactly once: dialed and recorded, or back where it came from.
"""
import collections
import dataclasses
import logging
import time
import uuid as uuidlib
from typing import Callable, Dict, List, Optional

import gevent
import gevent.event
import gevent.queue
import orjson
import redis

from . import call, model, originate, redial
from .call import Attempt, Verdict
from .esl import Answered, EslError, EslNotSent, HungUp, JobResult

log = logging.getLogger("cti_dialer")

# Connection trouble is retried; any other Redis error is a bug or a bad
# server state and is reported, never allowed to kill a loop.
REDIS_ERRORS = (redis.RedisError, OSError)
RETRYABLE = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, redis.ReadOnlyError, OSError)

SCHEDULE_PREFIX = "schedule:"
# In-flight states whose outcome was decided before the result was written.
DECIDED_STATES = {
    "expired": (call.CAUSE_EXPIRED, Verdict.DROPPED),
    "dropped": (call.CAUSE_NO_LINE, Verdict.DROPPED),
    "rejected": (call.CAUSE_REJECTED, Verdict.REJECTED),
}
# After "-ERR CAUSE" from originate, how long to wait for the channel's
# CHANNEL_HANGUP_COMPLETE: with a channel, DESTINATION_OUT_OF_ORDER is the far
# end's answer, without one it is FreeSWITCH's throttle.
JOB_ERROR_GRACE = 0.25
# An in-flight record nobody follows, older than this, was stranded by a lost
# Redis reply; the sweep settles it as recovery at start would.
STRANDED_AFTER = 120.0


@dataclasses.dataclass
class Claim:
    """A number this host took from Redis and has not finished."""
    claim_id: str
    task: str
    queue: str
    raw: bytes
    entry: Optional[model.NumberEntry]
    line: Optional[str]
    group: int
    claimed_at: float
    attempt_no: int = 1
    attempt: Optional[Attempt] = None
    kind: str = "queue"          # "queue": task is a task name; "schedule": a schedule config name
    score: float = 0.0           # sorted-set members: the time they were due
    expires: float = 0.0
    back: str = "list"           # where a requeue puts it: "list" (queue) or "zset" (schedule, redials)
    back_raw: Optional[bytes] = None   # the member to put back when it is not ``raw`` (a redial)
    done: Dict[str, int] = dataclasses.field(default_factory=dict)   # redials made, per outcome class
    tries: int = 0               # originates built in this attempt (failover, throttle re-sends)
    sent: int = 0                # originates written to the switch in this attempt
    seen: Optional[str] = None   # idempotency key this claim holds

    @property
    def owner(self):
        """Key for per-task counters; schedule configs get their own namespace."""
        return self.task if self.kind == "queue" else SCHEDULE_PREFIX + self.task

    @property
    def number(self):
        return self.entry.number if self.entry else model.raw_repr(self.raw, 200)


def redial_state(kind, back, raw):
    """(entry raw, attempt number, redials done) of a claimed member.

    Queue redials are ``{"raw": entry, "attempt": n, "done": {...}}`` members
    of the task's redial set; schedule redials carry ``attempt`` and
    ``redial_done`` in their own params.
    """
    if kind == "queue" and back == "zset":
        doc = model.loads(raw)
        entry = doc.get("raw")
        if not isinstance(entry, str):
            raise model.ModelError("redial member without its entry")
        return entry.encode("utf-8", "surrogateescape"), int(doc.get("attempt") or 2), dict(doc.get("done") or {})
    if kind == "schedule":
        try:
            params = (model.loads(raw) or {}).get("params") or {}
        except model.ModelError:
            params = {}
        if isinstance(params, dict):
            done = params.get("redial_done")
            attempt = params.get("attempt")
            return raw, attempt if isinstance(attempt, int) and attempt > 0 else 1, \
                dict(done) if isinstance(done, dict) else {}
    return raw, 1, {}


class Calls:
    def __init__(self, *, config, host, store, esl, stopping: gevent.event.Event,
                 source_of: Callable, line_of: Callable, candidates: Callable, on_freed: Callable, latency=None):
        self.config = config
        self.host = host
        self.store = store
        self.esl = esl
        self.stopping = stopping
        self.source_of = source_of          # claim -> Task / ScheduleConfig / None
        self.line_of = line_of              # line name -> Line / None
        self.candidates = candidates        # (source, first group) -> store.Candidates
        self.on_freed = on_freed            # owner -> None: a slot of that task came free
        self.latency = latency              # histogram: originate written -> BACKGROUND_JOB
        self.events = gevent.queue.Queue()
        self.claims: Dict[str, Claim] = {}
        self.by_uuid: Dict[str, Claim] = {}
        self.active = collections.Counter()
        self.stats = collections.defaultdict(collections.Counter)
        self.last_error: Dict[str, str] = {}
        self.pending_writes: List = []
        self.pending_requeues: List = []
        self.write_wake = gevent.event.Event()
        self.throttle_until = 0.0
        self.throttle_delay = 0.0
        self._helpers = set()

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
        self.on_freed(claim.owner)

    def _spawn(self, fn, *args):
        """A helper greenlet that can never leave its claim stranded in memory."""
        def guarded():
            try:
                fn(*args)
            except Exception:
                claim = args[0]
                log.exception("following %s failed; its number goes back to be dialed", claim.claim_id)
                self.requeue(claim)
        g = gevent.spawn(guarded)
        self._helpers.add(g)
        g.link(self._helpers.discard)
        return g

    def pending(self):
        """Claim ids whose Redis write is still queued here."""
        return {item[0] for item in self.pending_writes} | {item[0] for item in self.pending_requeues}

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
                                        source.extension, source.dialplan, source.context)
        return originate.build_bgapi(cmd, uuid)

    def record(self, claim, state="sent"):
        """The in-flight record of a claim (what recovery reads after a crash)."""
        raw = claim.back_raw if claim.back_raw is not None else claim.raw
        return {"kind": claim.kind, "task": claim.task, "queue": claim.queue, "back": claim.back,
                "raw": raw.decode("utf-8", "surrogateescape"), "line": claim.line, "group": claim.group,
                "state": state, "uuid": claim.attempt.uuid if claim.attempt else "",
                "claimed_at": claim.claimed_at, "sent_at": claim.attempt.sent_at if claim.attempt else 0,
                "attempt": claim.attempt_no, "try": claim.tries, "sent": claim.sent, "done": claim.done,
                "score": claim.score, "seen": claim.seen}

    def send(self, claims: List[Claim], commands: Dict[str, str], fresh=True):
        """Mark the claims sent in Redis, then write their originates.

        ``fresh`` claims are new to this host; others (failover, throttle)
        are already tracked and only change uuid.
        """
        if not claims:
            return
        marks = []
        for c in claims:
            if fresh and c.entry.id is not None and c.attempt_no == 1:
                c.seen = self.store.keys.seen(c.owner, c.entry.id)
            marks.append((c.claim_id, c.entry.number, self.record(c), c.seen if fresh else None))
        try:
            statuses = self.store.mark_sent(marks, self.config.dialer_dedup_window)
        except REDIS_ERRORS as exc:
            # Not marked, so nothing goes out: the numbers go back.
            log.warning("could not mark %d claim(s) sent (%s); requeueing them", len(claims), exc)
            for claim in claims:
                self.requeue(claim, tracked=not fresh)
            return
        replies = []
        for claim, status in zip(claims, statuses):
            if status != "ok":
                # Checked at the last moment: listed, or already taken by id.
                if not fresh:
                    self._untrack(claim)
                claim.attempt = None
                cause = call.CAUSE_DNC if status == "dnc" else call.CAUSE_DUPLICATE
                log.info("not dialing %s (%s %r): %s", claim.number, claim.kind, claim.task, cause)
                self.finish(claim, cause, Verdict.DROPPED, tracked=False)
                continue
            if fresh:
                self._track(claim)
            else:
                self.by_uuid[claim.attempt.uuid] = claim
            try:
                replies.append((claim, self.esl.send_async(commands[claim.claim_id])))
            except EslNotSent:
                # Not a byte was written: provably never dialed.
                self.requeue(claim)
                continue
            except EslError:
                replies.append((claim, None))   # unknown: settled by reconcile after reconnect
            claim.sent += 1
            self.stats[claim.owner]["dialed"] += 1
            log.info("originate %s %s=%s line=%s uuid=%s attempt=%d try=%d", claim.number,
                     "task" if claim.kind == "queue" else "config", claim.task, claim.line, claim.attempt.uuid,
                     claim.attempt_no, claim.tries)
        for claim, result in replies:
            if result is None:
                continue
            try:
                reply = self.esl.wait(result)
                text = reply.headers.get("Reply-Text", "")
                if text.startswith("-ERR"):
                    self.events.put_nowait(JobResult(claim.attempt.uuid, text))
            except EslError:
                pass    # unknown whether it reached the switch: reconcile settles it

    def requeue(self, claim, tracked=True):
        """Put a number that never rang back where it came from (written by the writer)."""
        self.pending_requeues.append((claim.claim_id, self.record(claim, "claimed")))
        self.write_wake.set()
        if tracked:
            self._untrack(claim)

    def reject(self, claim, reason):
        """Bad input found after the claim: rejected record plus a REJECTED_INPUT result."""
        log.error("rejected number entry from %s (%s %r): %s", claim.queue,
                  "task" if claim.kind == "queue" else "schedule config", claim.task, reason)
        self.last_error[claim.owner] = "rejected number entry: %s" % reason
        rejected = {"ts": time.time(), "host": self.host, "kind": "number", "name": claim.task,
                    "source": claim.queue, "raw": model.raw_repr(claim.raw), "reason": reason}
        self.finish(claim, call.CAUSE_REJECTED, Verdict.REJECTED, tracked=False, rejected=rejected)

    # --- events -------------------------------------------------------------------------

    def event_loop(self):
        for event in self.events:
            try:
                self._on_event(event)
            except Exception:
                log.exception("handling %r failed", event)

    def _on_event(self, event):
        if isinstance(event, JobResult):
            claim = self.by_uuid.get(event.job_uuid)
            if claim is None:
                return
            status, value = call.parse_job_body(event.body)
            att = claim.attempt
            att.job_done = True
            att.job_ok = status == "+OK"
            if self.latency is not None and att.sent_at:
                self.latency.observe(max(0.0, time.time() - att.sent_at))
            if att.job_ok:
                if att.sent_at >= self.throttle_until:
                    # Accepted after the last pause ended: the throttle is over.
                    self.throttle_delay = 0.0
            else:
                att.job_cause = value
                if att.hangup_cause is None:
                    gevent.spawn_later(JOB_ERROR_GRACE, self._attempt_over, claim, att)
                    return
        elif isinstance(event, Answered):
            claim = self.by_uuid.get(event.uuid)
            if claim is not None:
                claim.attempt.answered_at = event.ts
                log.info("answered %s %s=%s uuid=%s", claim.number,
                         "task" if claim.kind == "queue" else "config", claim.task, event.uuid)
            return
        elif isinstance(event, HungUp):
            claim = self.by_uuid.get(event.uuid)
            if claim is None:
                return
            att = claim.attempt
            att.hangup_cause, att.billsec, att.ended_at = event.cause, event.billsec, event.ts
            if event.answered and att.answered_at is None:
                att.answered_at = event.ts - event.billsec
        else:
            return
        if claim.attempt.finished():
            self._attempt_over(claim, claim.attempt)

    def _attempt_over(self, claim, att):
        if att.decided or claim.attempt is not att:
            return
        att.decided = True
        verdict = att.verdict()
        cause = att.cause()
        if verdict == Verdict.THROTTLE:
            self._note_throttle()
            self.stats[claim.owner]["throttled"] += 1
            source = self.source_of(claim)
            if source is not None and source.redial.rule(redial.THROTTLED) is not None:
                # The operator chose: a refusal ends the attempt and the
                # redial rule decides when (and whether) it is tried again.
                self.finish(claim, cause, verdict)
                return
        if verdict in (Verdict.ROUTE, Verdict.THROTTLE):
            self.by_uuid.pop(att.uuid, None)
            self._spawn(self._fail_over if verdict == Verdict.ROUTE else self._retry_throttled, claim, cause)
            return
        self.finish(claim, cause, verdict)

    def _park_unrung(self, claim):
        """Record that the claim's number has not rung: a crash now requeues it."""
        try:
            self.store.update_inflight(claim.claim_id, self.record(claim, "claimed"))
        except REDIS_ERRORS:
            pass    # the "sent" record stays: recovery would say UNKNOWN, never redial

    def _resend_when_ready(self, claim, source, line_name):
        """Wait for the switch, then send the claim again on ``line_name`` (or put it back)."""
        while not self.esl.ready.is_set() and not self.stopping.is_set():
            self.esl.ready.wait(1.0)
        line = self.line_of(line_name)
        if self.stopping.is_set() or source is None or line is None:
            self.requeue(claim)
            return
        try:
            cmd = self.command(source, claim, line)
        except originate.UnsafeValue as exc:
            self.reject(claim, str(exc))
            self._untrack(claim)
            return
        self.send([claim], {claim.claim_id: cmd}, fresh=False)

    def _fail_over(self, claim, cause):
        """Route failure on one group: the same number on the next group, once per group."""
        self._park_unrung(claim)
        source = self.source_of(claim)
        old_line = claim.line
        log.info("route failure %s on line %s (%s %r, group %d): failing over",
                 cause, old_line, claim.kind, claim.task, claim.group)
        nxt = None
        deadline = time.time() + self.config.dialer_failover_wait
        while source is not None and claim.group + 1 < len(source.line_groups) and not self.stopping.is_set():
            # The next groups may be busy right now: wait for a slot rather
            # than drop a number that never reached its callee.
            try:
                if claim.line:
                    self.store.release_line(claim.line, claim.claim_id)
                    claim.line = None
                candidates = self.candidates(source, claim.group + 1)
                nxt = self.store.reserve_line(claim.claim_id, candidates, time.time(),
                                              self.config.dialer_line_lease_ttl) if candidates else None
            except REDIS_ERRORS as exc:
                log.warning("failover of %s postponed: %s", claim.claim_id, exc)
            if nxt is not None or time.time() >= deadline:
                break
            self.stopping.wait(0.2)
            source = self.source_of(claim)
        if self.stopping.is_set() and nxt is None:
            self.requeue(claim)         # it never rang: back to the queue
            return
        if nxt is None:
            # Every remaining group failed or was full: the attempt ends with
            # the route cause; the number is not dialed again. (Freeing an
            # already freed lease again is harmless.)
            claim.line = claim.line or old_line
            self.finish(claim, cause, Verdict.ROUTE)
            return
        line_name, offset = nxt
        claim.line = line_name
        claim.group = claim.group + 1 + offset
        self._resend_when_ready(claim, source, line_name)

    def _retry_throttled(self, claim, cause):
        """FreeSWITCH refused for capacity: pause every originate, then resend this one."""
        self._park_unrung(claim)
        while not self.stopping.is_set() and time.time() < self.throttle_until:
            self.stopping.wait(self.throttle_until - time.time())
        self._resend_when_ready(claim, self.source_of(claim), claim.line)

    def _note_throttle(self):
        now = time.time()
        if now >= self.throttle_until:
            # Grow the pause only for refusals after the last pause ended:
            # a burst of refusals from one batch is one throttle, not many.
            self.throttle_delay = min(max(self.throttle_delay * 2, self.config.dialer_throttle_backoff),
                                      self.config.dialer_throttle_backoff_max)
            self.throttle_until = now + self.throttle_delay
            log.warning("FreeSWITCH throttling (DESTINATION_OUT_OF_ORDER without a channel): pausing %.1fs",
                        self.throttle_delay)

    def throttled_for(self, now):
        """Seconds until new originates may start (0 when not throttled)."""
        return max(0.0, self.throttle_until - now)

    # --- ends -----------------------------------------------------------------------------

    def finish(self, claim, cause, verdict, tracked=True, rejected=None):
        """End the attempt: result, counters and, when the strategy says so, a durable redial."""
        ts = time.time()
        result = self.result(claim, cause, verdict, ts)
        if rejected is not None:
            result["error"] = rejected["reason"]
        source = self.source_of(claim)
        klass = redial.outcome_class(cause, verdict)
        due = redial.decide(source.redial, klass, claim.done, ts) if source is not None else None
        retry = None
        if due is not None:
            retry = self._redial_member(claim, klass, due)
            result.update(next_due=due, redial_class=klass)
            log.info("redial of %s (%s %r) after %s at %s, attempt %d", claim.number, claim.kind, claim.task,
                     cause, time.strftime("%H:%M:%S", time.localtime(due)), claim.attempt_no + 1)
        counts = {"results": 1, "originates": claim.sent,
                  ("answered" if verdict == Verdict.ANSWERED else "cause:" + cause): 1}
        if verdict not in (Verdict.ANSWERED, Verdict.DROPPED, Verdict.REJECTED):
            counts["failed"] = 1
        if retry is not None:
            counts["redials_scheduled"] = 1
        self._queue_write(claim.claim_id, claim.line, result, rejected,
                          (self.store.keys.counters(claim.owner), counts), retry)
        if tracked:
            self._untrack(claim)
        counters = self.stats[claim.owner]
        counters["last_end"] = int(ts)
        if verdict == Verdict.ANSWERED:
            counters["answered"] += 1
        elif verdict == Verdict.REJECTED:
            counters["rejected"] += 1
        else:
            counters["failed"] += 1
            counters["cause:" + cause] += 1
        att = claim.attempt
        log.info("call %s %s=%s line=%s uuid=%s attempt=%d cause=%s answered=%s billsec=%d",
                 claim.number, "task" if claim.kind == "queue" else "config", claim.task, claim.line,
                 att.uuid if att else "", claim.attempt_no, cause, verdict == Verdict.ANSWERED,
                 att.billsec if att else 0)

    def _redial_member(self, claim, klass, due):
        """(key, score, member) of the redial to schedule for this claim."""
        done = dict(claim.done)
        done[klass] = done.get(klass, 0) + 1
        if claim.kind == "schedule":
            doc = model.loads(claim.raw)
            params = dict(doc.get("params") or {})
            params.update(attempt=claim.attempt_no + 1, redial_done=done, redial_id=str(uuidlib.uuid4()))
            doc["params"] = params
            return self.store.keys.schedule_numbers, due, orjson.dumps(doc)
        member = {"raw": claim.raw.decode("utf-8", "surrogateescape"), "attempt": claim.attempt_no + 1,
                  "done": done, "id": str(uuidlib.uuid4())}
        return self.store.keys.retries(claim.task), due, orjson.dumps(member)

    def result(self, claim, cause, verdict, ts):
        att = claim.attempt
        source = self.source_of(claim)
        group = source.line_groups[claim.group] if source is not None and claim.group < len(source.line_groups) \
            else ""
        ended = att.ended_at if att and att.ended_at else ts
        ring_end = att.answered_at if att and att.answered_at else ended
        queue = source.number_queue if claim.kind == "queue" and source is not None else claim.queue
        return {
            "ts": ts, "host": self.host, "kind": claim.kind, "queue": queue,
            ("task" if claim.kind == "queue" else "config"): claim.task,
            "number": claim.number, "id": claim.entry.id if claim.entry and claim.entry.id is not None else "",
            "number_variables": dict(claim.entry.variables) if claim.entry else {},
            "line": claim.line or "", "group_index": claim.group, "line_group": group,
            "uuid": att.uuid if att else "", "claim_id": claim.claim_id, "attempt": claim.attempt_no,
            "try": claim.tries, "cause": cause, "verdict": verdict.value, "answered": verdict == Verdict.ANSWERED,
            "billsec": att.billsec if att else 0,
            "ring_time": round(max(0.0, ring_end - att.sent_at), 3) if att and att.sent_at else "",
            "claimed_at": claim.claimed_at,
            "sent_at": att.sent_at if att else "", "answered_at": att.answered_at if att and att.answered_at else "",
            "ended_at": ended,
            **({"scheduled_at": claim.score, "expires": claim.expires} if claim.kind == "schedule" else {}),
        }

    def _queue_write(self, claim_id, line, result, rejected, counters=None, retry=None):
        self.pending_writes.append((claim_id, line, result, rejected, counters, retry))
        self.write_wake.set()

    def writer_loop(self):
        """Write requeues and results in batches; keep them while Redis is away."""
        delay = 0.2
        while True:
            self.write_wake.wait(1.0)
            self.write_wake.clear()
            while self.pending_requeues or self.pending_writes:
                try:
                    self._write_some()
                except RETRYABLE as exc:
                    log.warning("cannot write %d result(s) and %d requeue(s) yet (%s); keeping them",
                                len(self.pending_writes), len(self.pending_requeues), exc)
                    gevent.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                delay = 0.2

    def _write_some(self):
        if self.pending_requeues:
            claim_id, rec = self.pending_requeues[0]
            try:
                self.store.requeue(claim_id, rec)
            except redis.ResponseError as exc:
                log.error("cannot requeue %s (%s); its record stays in-flight for recovery: %s",
                          claim_id, exc, rec)
            self.pending_requeues.pop(0)
            return
        batch = self.pending_writes[:500]
        try:
            self.store.finish(batch)
        except redis.ResponseError:
            # One bad item must not block every result behind it.
            for item in batch:
                try:
                    self.store.finish([item])
                except redis.ResponseError as exc:
                    log.error("cannot write result for %s (%s); result: %s", item[0], exc, item[2])
        del self.pending_writes[:len(batch)]

    def drain(self, deadline):
        """Let queued writes go out before exit; True when all did."""
        self.write_wake.set()
        while (self.pending_writes or self.pending_requeues) and time.time() < deadline:
            gevent.sleep(0.05)
        return not (self.pending_writes or self.pending_requeues)

    # --- reconciling with the switch -------------------------------------------------------

    def uuid_exists(self, uuid):
        return self.esl.api(originate.build_api("uuid_exists", uuid)).strip() == "true"

    def reconcile(self, older_than=0.0):
        """Ask FreeSWITCH about calls whose events we may have missed."""
        now = time.time()
        for claim in list(self.claims.values()):
            att = claim.attempt
            if att is None or att.decided or att.sent_at > now - older_than or claim.claim_id not in self.claims:
                continue
            if self.by_uuid.get(att.uuid) is not claim:
                continue        # between attempts (failover, throttle pause)
            try:
                exists = self.uuid_exists(att.uuid)
            except EslError:
                return
            if exists:
                if not att.job_done:
                    att.job_done, att.job_ok = True, True
                continue
            if claim.claim_id in self.claims and self.by_uuid.get(att.uuid) is claim and not att.decided:
                att.decided = True
                log.warning("lost track of call uuid=%s (%s %r): recorded as UNKNOWN, not redialed",
                            att.uuid, claim.kind, claim.task)
                self.finish(claim, call.CAUSE_UNKNOWN, Verdict.UNKNOWN)

    def recover(self, records, older_than=None):
        """Settle in-flight records nobody here follows (all of them at start).

        claimed: never sent, back to the queue or set. sent: followed when the
        call is still up, else recorded UNKNOWN (never redialed). Decided
        (expired, dropped, rejected): the result is written.
        """
        counts = collections.Counter()
        skip = self.pending()
        now = time.time()
        for claim_id, rec in records.items():
            if claim_id in self.claims or claim_id in skip:
                continue
            if older_than is not None and float(rec.get("claimed_at") or 0) > now - older_than:
                continue
            state = rec.get("state")
            if state == "claimed":
                self.store.requeue(claim_id, rec)
                counts["requeued"] += 1
                continue
            claim = self._claim_from_record(claim_id, rec)
            if state in DECIDED_STATES:
                cause, verdict = DECIDED_STATES[state]
                if state == "rejected":
                    self.reject(claim, rec.get("reason") or "rejected before a restart")
                else:
                    self.finish(claim, cause, verdict, tracked=False)
                counts["settled"] += 1
                continue
            claim.attempt = Attempt(uuid=rec.get("uuid", ""), line=claim.line or "", group_index=claim.group,
                                    sent_at=float(rec.get("sent_at") or 0))
            if _is_uuid(rec.get("uuid")) and self.uuid_exists(rec["uuid"]):
                claim.attempt.job_done, claim.attempt.job_ok = True, True
                self._track(claim)
                counts["followed"] += 1
            else:
                claim.attempt.job_done, claim.attempt.job_ok = True, False
                claim.attempt.job_cause = call.CAUSE_UNKNOWN
                claim.attempt.decided = True
                self.finish(claim, call.CAUSE_UNKNOWN, Verdict.UNKNOWN, tracked=False)
                counts["unknown"] += 1
        return counts

    def _claim_from_record(self, claim_id, rec):
        raw = rec.get("raw", "")
        raw = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
        kind = rec.get("kind", "queue")
        back = rec.get("back") or ("zset" if kind == "schedule" else "list")
        entry, expires, entry_raw = None, 0.0, raw
        try:
            entry_raw, _, _ = redial_state(kind, back, raw)
            if kind == "schedule":
                scheduled = model.parse_scheduled(raw)
                entry, expires = scheduled.entry, scheduled.expires
            else:
                entry = model.parse_number(entry_raw)
        except model.ModelError:
            pass
        done = rec.get("done")
        return Claim(claim_id=claim_id, task=rec.get("task", ""), queue=rec.get("queue", ""), raw=entry_raw,
                     entry=entry, line=rec.get("line") or None, group=int(rec.get("group") or 0),
                     claimed_at=float(rec.get("claimed_at") or 0), attempt_no=int(rec.get("attempt") or 1),
                     kind=kind, score=float(rec.get("score") or 0), expires=expires, back=back,
                     back_raw=raw if entry_raw is not raw else None, done=dict(done) if isinstance(done, dict) else {},
                     tries=int(rec.get("try") or 0), sent=int(rec.get("sent") or 0), seen=rec.get("seen"))

    def renew_leases(self, now):
        self.store.renew_leases(((c.line, c.claim_id) for c in self.claims.values() if c.line),
                                now, self.config.dialer_line_lease_ttl)


def _is_uuid(value):
    try:
        return isinstance(value, str) and str(uuidlib.UUID(value)) == value
    except ValueError:
        return False
