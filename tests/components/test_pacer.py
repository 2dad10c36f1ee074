"""The pacer's view of a queue: every paced task naming it counts, each with its own measures."""
import types

import pytest

from cti_dialer import agent_pacing as ap
from cti_dialer.claim import Claim, Kind
from cti_dialer.lifecycle import ClaimState
from cti_dialer.outcome import Attempt
from cti_dialer.pacer import Pacer

pytestmark = pytest.mark.unit
NOW = 1000.0
QUEUE = "sales@default"


class Board:
    def __init__(self, free):
        self.free = free
        self.wakeups = types.SimpleNamespace(task=lambda name: None)

    def view(self, queue, now):
        return ap.QueueView(logged_in=200, free=self.free if queue == QUEUE else 0, busy_ends=())


def task(name, queue=QUEUE):
    return types.SimpleNamespace(name=name, pacing=ap.parse({"mode": "progressive", "queue": queue}))


def ringing(cid, source, kind=Kind.QUEUE, state=ClaimState.SENT):
    c = Claim(claim_id=cid, kind=kind, source_name=source, home_key="q", raw=b"1001", entry=None, line="l1",
              group=0, claimed_at=NOW - 1, state=state)
    c.attempt = Attempt(uuid=cid, line="l1", group_index=0, sent_at=NOW - 1)
    return c


def test_tasks_naming_one_queue_share_its_free_agents():
    a, b, other = task("a"), task("b"), task("c", queue="support@default")
    pacer = Pacer(Board(free=6), types.SimpleNamespace(tasks={t.name: t for t in (a, b, other)}))
    # b has not looked yet (a restart): its calls count all the same.
    claims = {c.claim_id: c for c in [ringing("1", "a"), ringing("2", "b"), ringing("3", "b"),
                                      ringing("4", "c"),                       # another queue's
                                      ringing("5", "b", kind=Kind.SCHEDULE),   # a schedule config of the same name
                                      ringing("6", "a", state=ClaimState.ANSWERED)]}
    claims["6"].attempt.queue_joined = NOW          # answered and waiting in the queue
    # 6 free agents less a's and b's 3 ringing and 1 waiting.
    assert pacer.room(a, claims, NOW) == (2, None)
    assert pacer.room(b, claims, NOW) == (2, None)
    assert pacer.room(other, claims, NOW) == (0, None)


def test_a_task_no_longer_paced_for_the_queue_stops_counting():
    a, b = task("a"), task("b")
    catalog = types.SimpleNamespace(tasks={"a": a, "b": b})
    pacer = Pacer(Board(free=6), catalog)
    claims = {c.claim_id: c for c in [ringing("1", "b"), ringing("2", "b")]}
    assert pacer.room(a, claims, NOW) == (4, None)
    catalog.tasks["b"] = types.SimpleNamespace(name="b", pacing=None)           # b dials by its limit now
    assert pacer.room(a, claims, NOW) == (6, None)
    catalog.tasks["b"] = task("b", queue="support@default")                     # or for another team
    assert pacer.room(a, claims, NOW) == (6, None)
    del catalog.tasks["b"]                                                        # or is gone
    assert pacer.room(a, claims, NOW) == (6, None)
