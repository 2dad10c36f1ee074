"""Trying a number again within one attempt: failover to the next line group, throttle re-sends,
and what an attempt says about its line's health.

Part of the call tracker (``tracker.CallTracker`` inherits it): these run in
helper greenlets while the claim is parked, and either send it again or
end or requeue it through the tracker.
"""
import logging
import time

from . import originate, scripts
from .outcome import Verdict
from .runtime import REDIS_ERRORS

log = logging.getLogger("cti_dialer")


class Failover:
    """The tracker's re-sends; it relies on the tracker's esl, store, catalog, budget, config and stopping."""

    def _report_line(self, line, worked, cause):
        """Count a call for or against its line's health, on every host (fault detection)."""
        try:
            transition, failures = self.store.line_result(line.name, worked, line.fault_threshold,
                                                          line.fault_try_interval, time.time())
        except REDIS_ERRORS as exc:
            log.warning("line %s: could not count a call for fault detection: %s", line.name, exc)
            return
        if transition == "faulted":
            log.error("line %s out of service after %d consecutive failed calls (last: %s); "
                      "one probe call in %.0fs decides whether it comes back",
                      line.name, failures, cause, line.fault_try_interval)
        elif transition == "still_out":
            log.warning("line %s: a call failed while out of service (%s): next probe in %.0fs",
                        line.name, cause, line.fault_try_interval)
        elif transition == "recovered":
            log.warning("line %s back in service: a call went through", line.name)


    def _switch_refused(self, claim, att):
        """The switch refused the command itself: nothing was dialed; the number waits, the host backs off."""
        now = time.time()
        self.budget.refused(now)
        if not self.health.switch_fault:
            log.error("FreeSWITCH refuses originates (%s): nothing is dialed, numbers wait in their queues; "
                      "check the event socket's ACL and the password's permissions. Trying again after %.1fs",
                      att.job_cause, self.budget.pause)
        self.health.switch_fault = att.job_cause
        self.stats[claim.owner]["switch_refused"] += 1
        self.requeue(claim)


    def _park_unrung(self, claim):
        """Record that the claim's number has not rung: a crash now requeues it. False: no longer ours."""
        try:
            if self.store.update_inflight(claim.claim_id, claim.to_record()) == "lost":
                self._lose(claim, "while parked between two tries")
                return False
        except REDIS_ERRORS:
            pass    # the "sent" record stays: recovery would say UNKNOWN, never redial
        return True


    def _resend_when_ready(self, claim, source, line_name):
        """Wait for the switch, then send the claim again on ``line_name`` (or put it back)."""
        while not self.esl.ready.is_set() and not self.stopping.is_set():
            self.esl.ready.wait(1.0)
        # Failover and throttle re-sends are originates like any other: they
        # go at the budget's pace, never all at once after a pause.
        self._take_send_slot()
        line = self.catalog.line(line_name)
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
        if not self._park_unrung(claim):
            return
        source = self.catalog.source_of(claim)
        old_line = claim.line
        log.info("route failure %s on line %s (%s %r, group %d): failing over",
                 cause, old_line, claim.kind.value, claim.source_name, claim.group)
        nxt = None
        deadline = time.time() + self.config.dialer_failover_wait
        while source is not None and claim.group + 1 < len(source.line_groups) and not self.stopping.is_set():
            # The next groups may be busy right now: wait for a slot rather
            # than drop a number that never reached its callee.
            tried_at = time.time()
            try:
                if claim.line:
                    self.store.release_line(claim.line, claim.claim_id)
                    claim.line = None
                candidates = self.catalog.candidates(source, claim.group + 1)
                reply = self.store.reserve_line(claim.claim_id, candidates, time.time(),
                                                self.config.dialer_line_lease_ttl, claim.source_name,
                                                getattr(source, "cps", 0.0)) if candidates else None
                nxt = (reply.line, reply.group) if reply is not None and reply.line else None
            except REDIS_ERRORS as exc:
                # Redis away is not "no free line": that time does not count
                # against failover_wait.
                deadline += time.time() - tried_at + 0.2
                log.warning("failover of %s postponed until Redis answers: %s", claim.claim_id, exc)
                reply = None
            if nxt is not None:
                break
            pause = 0.2
            if reply is not None and reply.status == scripts.PACED:
                # The task's cps is not "no free line": the failover waits its turn.
                pause = max(0.001, min(reply.wake - time.time(), 60.0))
                deadline += pause
            elif reply is not None and reply.wake is not None:
                pause = max(0.001, min(pause, reply.wake - time.time()))
            if time.time() >= deadline:
                break
            self.stopping.wait(pause)
            source = self.catalog.source_of(claim)
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
        """FreeSWITCH refused for capacity: wait out the pause, then resend at the budget's pace."""
        if self._park_unrung(claim):
            self._resend_when_ready(claim, self.catalog.source_of(claim), claim.line)


    def _take_send_slot(self) -> bool:
        """Wait for the budget to allow one originate; False when stopping first."""
        while not self.stopping.is_set():
            now = time.time()
            if self.budget.take(1, now):
                return True
            self.stopping.wait(self.budget.wait(now) or 0.01)
        return False


    def throttled_for(self, now):
        """Seconds until new originates may start (0 when one may go now)."""
        return self.budget.wait(now)

