"""Per-number daily attempt caps across hosts, and calling hours in the callee's time, end to end."""
import datetime
import json
import zoneinfo

import pytest

from cti_dialer.fsim import Outcome
from tests.conftest import wait_for
from tests.e2e.conftest import DOMAIN, basic_setup, push, put_task, results, task_params

pytestmark = pytest.mark.e2e
RETRIES = "cti_dialer_retry@%s:t1" % DOMAIN


def test_the_daily_cap_holds_across_two_daemons(r, sim, daemon_factory, fault_report):
    sim.default_outcome = Outcome.no_answer(ring_ms=300)
    extra = {"dialer": {"daily_attempt_cap": "2"}}
    daemon_factory(host="fs1", extra=extra)
    daemon_factory(host="fs2", extra=extra)
    basic_setup(r)
    push(r, "queue:t1", *(["70001"] * 6 + ["70002"]))
    put_task(r, "t1", task_params(limit=4))
    wait_for(lambda: r.llen("queue:t1") == 0 and r.zcard(RETRIES) == 4 and len(results(r)) == 3, 20,
             message="3 results and 4 numbers waiting for tomorrow")
    dialed = [o.number for o in sim.originates()]
    assert dialed.count("70001") == 2 and dialed.count("70002") == 1
    tomorrow = datetime.datetime.combine(datetime.datetime.now(datetime.timezone.utc).date()
                                         + datetime.timedelta(days=1), datetime.time(),
                                         tzinfo=datetime.timezone.utc).timestamp()
    waiting = r.zrange(RETRIES, 0, -1, withscores=True)
    assert all(json.loads(m)["raw"] == "70001" and s == tomorrow for m, s in waiting)
    assert {res["host"] for res in results(r)} <= {"fs1", "fs2"}
    fault_report("daily cap 2, two hosts, 6 entries of one number: %d originates, %d wait for tomorrow"
                 % (dialed.count("70001"), len(waiting)))


def test_a_number_waits_for_the_callees_hours_and_is_dialed_when_they_open(r, sim, daemon, fault_report):
    zone = zoneinfo.ZoneInfo("America/New_York")
    opens = datetime.datetime.now(zone).replace(microsecond=0) + datetime.timedelta(seconds=4)
    basic_setup(r)
    put_task(r, "t1", task_params(callee_time=True, work_hour=[
        {"begin": opens.strftime("%H:%M:%S"), "end": (opens + datetime.timedelta(hours=1)).strftime("%H:%M:%S")}]))
    push(r, "queue:t1", "+12125550123")
    wait_for(lambda: r.zcard(RETRIES) == 1, 10, message="the number waiting in Redis")
    assert sim.originates() == [] and r.llen("queue:t1") == 0
    wait_for(lambda: sim.originates(), 15, message="the number dialed once its hours open")
    sent_at = sim.originates()[0].ts
    assert sent_at >= opens.timestamp() - 0.05
    wait_for(lambda: len(results(r)) == 1, 10)
    assert r.zcard(RETRIES) == 0 and len(sim.originates()) == 1
    fault_report("callee hours: waited in Redis, dialed %.2f s after its window opened" % (sent_at - opens.timestamp()))
