"""Agent-aware pacing at run time: what each paced task's calls did in its queue, and how many it may start.

The call tracker hands it mod_callcenter's events and each finished attempt;
the dispatcher asks it for a paced task's room. The decisions are
``agent_pacing``'s (pure); the agents are ``agents.AgentBoard``'s.
"""
import collections
import logging
from typing import Dict

from . import agent_pacing
from .claim import Kind
from .esl import CallcenterInfo
from .lifecycle import ClaimState
from .outcome import Verdict

log = logging.getLogger("cti_dialer.pacer")


class Pacer:
    def __init__(self, board, catalog):
        self.board = board
        self.catalog = catalog                      # which tasks are paced, and for which queue, now
        self.measures: Dict[str, agent_pacing.Measures] = {}
        self.abandoned = collections.Counter()     # per task, since start (status and metrics)

    def _measures(self, task) -> agent_pacing.Measures:
        current = self.measures.get(task.name)
        if current is None or current.spec != task.pacing:
            current = self.measures[task.name] = agent_pacing.Measures(task.pacing)
        return current

    # --- from the tracker ------------------------------------------------------------------

    def on_callcenter(self, event: CallcenterInfo, by_uuid):
        """A queue event: the board's agents, and the queue life of our own calls."""
        self.board.on_event(event)
        claim = by_uuid.get(event.member_session) if event.member_session else None
        if claim is None or claim.attempt is None:
            return
        att = claim.attempt
        if event.action == "member-queue-start":
            att.queue_joined = event.ts
        elif event.action == "bridge-agent-start" and att.agent_at is None:
            att.agent_at, att.agent = event.ts, event.agent
        elif event.action == "member-queue-end" and att.agent_at is None:
            att.left_queue = event.ts

    def on_answer(self, claim, source, now):
        """A paced task's call was answered: counted for the answer rate now, not when it ends."""
        att = claim.attempt
        if getattr(source, "pacing", None) is None or att is None or not att.sent_at or att.answer_seen is not None:
            return
        att.answer_seen = now
        att.pacing_event = self._measures(source).attempt(now, answered=True, answer_delay=max(0.0, now - att.sent_at))
        # An answer changes what the task may dial (one fewer pending, one waiting).
        self.board.wakeups.task(source.name)

    def on_finish(self, claim, source, verdict, result, now):
        """A paced task's attempt ended: whether it was abandoned, into its result and its measures."""
        spec = getattr(source, "pacing", None)
        att = claim.attempt
        if spec is None or att is None or not att.sent_at:
            return
        live = verdict == Verdict.ANSWERED
        abandoned, wait = False, None
        if live:
            joined = att.queue_joined or att.answered_at or att.sent_at
            if att.agent_at is not None:
                wait = max(0.0, att.agent_at - joined)
            # The US rule: a live answer not with an agent within agent_wait
            # (or that left the queue first) is abandoned.
            abandoned = wait is None or wait > spec.agent_wait
            result.update(abandoned=abandoned, agent=att.agent or "",
                          agent_wait=round(wait, 3) if wait is not None else "")
            if abandoned:
                self.abandoned[source.name] += 1
        measures = self._measures(source)
        if att.pacing_event is None:
            measures.attempt(now, answered=False)
        elif verdict == Verdict.MACHINE:
            measures.machine(att.pacing_event)      # a machine needs no agent: not an answer for the pace
        measures.record(now, live=live, abandoned=abandoned)

    # --- for the dispatcher ------------------------------------------------------------------

    def room(self, task, claims, now):
        """(calls ``task`` may start now for its queue's agents, when to look again or None); its limit still applies.

        The calls of every paced task naming the same queue count: they
        answer into the same agents.
        """
        measures = self._measures(task)
        ringing, waiting = [], 0
        for claim in claims.values():
            att = claim.attempt
            if att is None or claim.kind != Kind.QUEUE:
                continue
            owner = task if claim.source_name == task.name else self.catalog.tasks.get(claim.source_name)
            # Tasks paced for this queue now (one that dropped its pacing or
            # changed queue no longer counts; one that has not looked yet,
            # after a restart, does).
            if owner is None or owner.pacing is None or owner.pacing.queue != task.pacing.queue:
                continue
            theirs = self._measures(owner)
            if claim.state == ClaimState.ANSWERED:
                # Waiting for an agent: in the queue, or just answered and on
                # its way there; not one that left it or never came (a
                # machine's message, a dialplan without the queue).
                if att.agent_at is None and att.left_queue is None and (
                        att.queue_joined is not None
                        or (att.answer_seen is not None and now - att.answer_seen <= theirs.spec.agent_wait)):
                    waiting += 1
            elif claim.state in (ClaimState.CLAIMED, ClaimState.SENT, ClaimState.PARKED):
                ringing.append(agent_pacing.Ringing(max(0.0, now - att.sent_at) if att.sent_at else 0.0, theirs))
        view = self.board.view(task.pacing.queue, now)
        return agent_pacing.room(task.pacing, view, measures, ringing=ringing, waiting=waiting, now=now)

    def report(self, task, now) -> dict:
        """A paced task's figures, for its status record and the metrics."""
        measures = self._measures(task)
        rate, _ = measures.abandon_rate(now)
        return {"abandoned": self.abandoned[task.name], "abandon_rate": rate,
                "agents_free": self.board.view(task.pacing.queue, now).free, "pacing_risk": measures.risk}
