"""The schedule dialer: dials due members of the schedule sorted set.

One ``loop(now)`` claims one batch of due members (score <= now): each one
atomically with a line slot, or under the seed's rule (expired: not called;
no free line: written back a minute later, or dropped when it has no
``expires`` or would expire first). The rule lives in the claim script
(``scripts.CLAIM_SCHEDULED``), where it is atomic across daemons. A poll
costs O(log N) in the set's size. A member that cannot be dialed (malformed,
an unknown config, a score of -inf or +inf) is taken out of the set with a
rejected record and a result, never left to block or vanish.
"""
import datetime
import logging
import math
import uuid as uuidlib

from . import model, outcome, scripts
from .claim import Claim, HomeType, Kind, redial_state
from .lifecycle import ClaimState
from .outcome import Verdict
from .runtime import REDIS_ERRORS

log = logging.getLogger("cti_dialer")


class ScheduleDialer:
    def __init__(self, *, config, catalog, tracker, store, health, tz):
        self.config = config
        self.catalog = catalog
        self.tracker = tracker
        self.store = store
        self.health = health
        self.tz = tz

    def initialize(self):
        pass

    def loop(self, now: float) -> float:
        """Claim and dial one batch of due members; returns 0 when more may be due."""
        poll = self.config.dialer_schedule_poll_interval
        if not self.health.connected:
            return poll
        wait = self.tracker.budget.wait(now)
        if wait:
            return min(wait, poll)
        try:
            return 0.0 if self.dial_due(now) else poll
        except REDIS_ERRORS:
            self.health.redis_trouble_at = now     # a claim may have run unheard: housekeeping looks soon
            raise

    def shutdown(self):
        pass

    def dial_due(self, now: float) -> bool:
        """One batch; True when it was full (more may be due)."""
        budget = self.tracker.budget
        batch = budget.available(now, self.config.dialer_claim_batch)
        if not batch:
            return False
        # Look first, take the budget after: a budget held across this round
        # trip would make the queue dispatcher skip an originate it could send.
        members = self.store.due_members(now, batch)
        members = members[:budget.take(len(members), now)] if members else members
        if not members:
            return False
        items, parsed = [], {}
        for member, score in members:
            claim_id = str(uuidlib.uuid4())
            try:
                scheduled = model.parse_scheduled(member)
            except model.ModelError as exc:
                self._reject(member, score, claim_id, "", str(exc), now)
                continue
            if not math.isfinite(score):
                self._reject(member, score, claim_id, scheduled.config, _bad_score(score), now)
                continue
            problem = self.catalog.schedule_config_problem(scheduled.config)
            if problem:
                self._reject(member, score, claim_id, scheduled.config, problem, now)
                continue
            config = self.catalog.schedule_configs[scheduled.config]
            items.append((member, claim_id, scheduled.expires, config.name, self.catalog.candidates(config)))
            parsed[claim_id] = (scheduled, score, config)
        replies = self.store.claim_scheduled(items, now, self.config.dialer_line_lease_ttl,
                                             self.config.dialer_schedule_retry_delay) if items else []
        by_config = {}
        host_taken = False
        for (member, claim_id, _, _, _), (status, line_name, group) in zip(items, replies):
            scheduled, score, config = parsed[claim_id]
            if status == scripts.HOST_TAKEN:
                host_taken = True
                continue
            if status == scripts.ERROR:
                log.error("schedule member %s (config %r) not claimed, it stays in the set: %s",
                          scheduled.entry.number, config.name, line_name)
                continue
            claim = Claim(claim_id=claim_id, kind=Kind.SCHEDULE, source_name=config.name,
                          home_key=self.store.keys.schedule_numbers, raw=member, entry=scheduled.entry,
                          line=line_name if status == "ok" else None, group=group or 0, claimed_at=now,
                          score=score, expires=scheduled.expires, home_type=HomeType.SORTED_SET)
            _, claim.attempt_no, claim.done = redial_state(Kind.SCHEDULE, HomeType.SORTED_SET, member)
            if status == ClaimState.REJECTED.value:
                # Its score changed to -inf or +inf after it was read.
                claim.state = ClaimState.REJECTED
                self.tracker.reject(claim, line_name)
            elif status == "ok":
                by_config.setdefault(config.name, (config, []))[1].append(claim)
            elif status == "expired":
                log.info("schedule member %s (config %r) expired at %s: not called",
                         scheduled.entry.number, config.name, scheduled.expires)
                claim.state = ClaimState.EXPIRED
                self.tracker.finish(claim, outcome.CAUSE_EXPIRED, Verdict.DROPPED, tracked=False)
            elif status == "dropped":
                log.info("schedule member %s (config %r): no line available and %s: dropped",
                         scheduled.entry.number, config.name,
                         "expires is 0" if not scheduled.expires else "expires is too close")
                claim.state = ClaimState.DROPPED
                self.tracker.finish(claim, outcome.CAUSE_NO_LINE, Verdict.DROPPED, tracked=False)
            elif status == "requeued":
                log.info("schedule member %s (config %r): no line available, written back for %s",
                         scheduled.entry.number, config.name,
                         datetime.datetime.fromtimestamp(line_name, self.tz).isoformat(timespec="seconds"))
                self.tracker.note(claim.owner, "requeued")
        if host_taken:
            log.error("host name %s is held by another instance: no schedule member claimed",
                      self.store.keys.host)
        budget.give_back(len(members) - sum(len(claims) for _, claims in by_config.values()))
        for config, claims in by_config.values():
            self.tracker.start(config, claims)
        return len(members) == batch and not host_taken

    def _reject(self, member, score, claim_id, config_name, reason, now):
        if not self.store.take_rejected(member, claim_id, now, reason, config_name):
            return      # another daemon took it first, or this host's name is another instance's
        claim = Claim(claim_id=claim_id, kind=Kind.SCHEDULE, source_name=config_name,
                      home_key=self.store.keys.schedule_numbers, raw=member, entry=None, line=None, group=0,
                      claimed_at=now, score=score, home_type=HomeType.SORTED_SET, state=ClaimState.REJECTED)
        self.tracker.reject(claim, reason)


def _bad_score(score: float) -> str:
    return "score %s is not a time to call (ZADD the unix time to call at)" % score
