"""CallTracker.recover against a real redis-server: what a restart does with each in-flight state."""
import json
import time

import pytest

from cti_dialer import settings
from cti_dialer.keys import Keys
from cti_dialer.pacing import SendBudget
from cti_dialer.runtime import Health, Wakeups
from cti_dialer.store import Store
from cti_dialer.tracker import CallTracker
from cti_dialer.writer import ResultWriter

pytestmark = pytest.mark.integration
KEYS = Keys("fs1", "test")


class FakeEsl:
    def __init__(self, up):
        self.up = up

    def api(self, command):
        return "true" if command.split()[-1] in self.up else "false"


class NoConfig:
    """A catalog with nothing in it: recovery must not need the configuration."""
    def source_of(self, claim):
        return None


def make(r, up=()):
    config = settings.load(text="[dialer]\nhost = fs1\ndomain = test\n")
    store = Store(r, KEYS)
    return CallTracker(config=config, host="fs1", store=store, esl=FakeEsl(set(up)), catalog=NoConfig(),
                       writer=ResultWriter(store), wakeups=Wakeups(), health=Health(),
                       budget=SendBudget(1, 30))


def rec(state, uuid="", raw="1001", kind="queue", queue="queue:t1", **extra):
    doc = {"kind": kind, "task": "t1", "queue": queue, "raw": raw, "line": "l1", "group": 0, "state": state,
           "uuid": uuid, "claimed_at": time.time() - 1000, "sent_at": time.time(), "attempt": 1}
    doc.update(extra)
    return json.dumps(doc)


def test_every_state_is_settled_and_active_counts_only_followed_calls(r):
    up = ["11111111-1111-4111-8111-11111111111%d" % i for i in range(4)]
    gone = ["22222222-2222-4222-8222-22222222222%d" % i for i in range(4)]
    for i in range(4):
        r.hset(KEYS.inflight, "up%d" % i, rec("sent", up[i], raw="10%d" % i))
        r.hset(KEYS.inflight, "gone%d" % i, rec("sent", gone[i], raw="20%d" % i))
    r.hset(KEYS.inflight, "claimed", rec("claimed", raw="3001"))
    r.hset(KEYS.inflight, "sched", rec("claimed", kind="schedule", queue=KEYS.schedule_numbers,
                                       raw='{"params":{"number":"4001","config":"c"}}', score=123.0))
    r.hset(KEYS.inflight, "exp", rec("expired", kind="schedule", queue=KEYS.schedule_numbers,
                                     raw='{"params":{"number":"5001","config":"c","expires":1}}'))
    calls = make(r, up)
    counts = calls.recover(Store(r, KEYS).inflight())
    assert counts == {"followed": 4, "unknown": 4, "requeued": 2, "settled": 1}
    assert calls.active["t1"] == 4 and len(calls.claims) == 4
    assert r.lrange("queue:t1", 0, -1) == [b"3001"]
    assert r.zscore(KEYS.schedule_numbers, '{"params":{"number":"4001","config":"c"}}') == 123.0
    calls.store.finish(calls.writer.results)
    causes = sorted(f[b"cause"].decode() for _, f in r.xrange(KEYS.results))
    assert causes == ["EXPIRED"] + ["UNKNOWN"] * 4
    assert set(r.hkeys(KEYS.inflight)) == {b"up0", b"up1", b"up2", b"up3"}


def test_sweep_leaves_young_and_pending_records_alone(r):
    r.hset(KEYS.inflight, "young", rec("claimed", claimed_at=time.time()))
    r.hset(KEYS.inflight, "old", rec("claimed", raw="7001"))
    calls = make(r)
    calls.writer.requeues.append(("old", {}))
    assert calls.recover(Store(r, KEYS).inflight(), older_than=120) == {}
    calls.writer.requeues.clear()
    assert calls.recover(Store(r, KEYS).inflight(), older_than=120) == {"requeued": 1}
    assert r.hkeys(KEYS.inflight) == [b"young"]
