"""Hostile configuration against the real daemon (issue 12, items 8-10), with figures.

- config_change messages with huge keys or keys naming nothing leave no
  phantom task, a small status hash and a bounded number of short records;
- a flood of config_change messages is absorbed and a real change published
  right after it takes effect within a second;
- a task whose name is not UTF-8 is rejected while the others keep dialing.
"""
import collections
import json
import time

import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import DOMAIN, basic_setup, publish, push, put_line, put_task, rejected, results, task_params

pytestmark = pytest.mark.e2e

TASK_STATUS = "cti_dialer_task_status@fs1"
TASKS = "cti_queue_dialer_task@template"
REJECT_LIMIT = 10           # config_watcher.REJECT_LIMIT: records per channel per minute


def status_fields(r):
    return {k.decode(): v for k, v in r.hgetall(TASK_STATUS).items()}


def status_written_after(r, ts):
    """Wait for a status write (every 2 s) newer than ``ts``; its fields."""
    def fresh():
        fields = status_fields(r)
        return fields if fields and all(json.loads(v)["updated"] > ts for v in fields.values()) else None
    return wait_for(fresh, 10, message="a task status written after %.3f" % ts)


def daemon_rss_kb(r):
    return int(r.hget("cti_dialer_status@fs1", "rss_kb") or 0)


def applied(daemon, table, key):
    daemon.wait_log("config_change on config@all: table=%s key=%s applied" % (table, key))


def test_huge_and_junk_keys_leave_no_phantom_task(r, sim, daemon, fault_report):
    basic_setup(r)
    put_task(r, "t1", task_params())
    applied(daemon, "cti_queue_dialer_task", "t1")
    status_written_after(r, time.time())
    redis_before, rss_before = r.info("memory")["used_memory"], daemon_rss_kb(r)
    for i in range(20):
        r.publish("config@all", b'{"type":"config_change","table":"cti_queue_dialer_task","key":"%02d%s"}'
                  % (i, b"k" * (512 * 1024)))
    for i in range(20):             # valid keys that name nothing
        publish(r, "cti_queue_dialer_task", "nosuch-%d" % i)
    put_line(r, "l1", "sofia/gateway/gw1/", limit=10)        # marker: every message before it was read
    applied(daemon, "cti_line", "l1")
    fields = status_written_after(r, time.time())
    size = sum(len(k) + len(v) for k, v in fields.items())
    records = [x for x in rejected(r) if x["kind"] == "message"]
    redis_growth = r.info("memory")["used_memory"] - redis_before
    rss_growth = daemon_rss_kb(r) - rss_before
    fault_report("status fields=%d size=%dB; message records=%d (max %dB, reason max %d chars); "
                 "redis +%dKB daemon rss +%dKB" % (
                     len(fields), size, len(records), max(sum(len(v) for v in x.values()) for x in records),
                     max(len(x["reason"]) for x in records), redis_growth // 1024, rss_growth))
    assert sorted(fields) == ["t1"] and size < 1000
    assert len(records) == REJECT_LIMIT
    assert all(sum(len(v) for v in x.values()) < 2500 and len(x["reason"]) < 100 for x in records)
    assert records[0]["reason"].startswith("message is 5243")
    assert redis_growth < 4 * 1024 * 1024


@pytest.mark.parametrize("rate, seconds", [(10_000, 5.0), (None, 3.0)], ids=["10k-per-s", "max-rate"])
def test_a_real_change_applies_within_a_second_after_a_flood(r, sim, daemon, fault_report, rate, seconds):
    """The issue's flood (10,000 a second for 5 s), then as fast as this client can publish."""
    basic_setup(r)
    put_task(r, "t1", task_params(enable=False))
    daemon.wait_log("task 't1' loaded (template): limit=10 enable=False")
    push(r, "queue:t1", "5001")
    # Lines and groups only, and few distinct keys (so no batch is turned into
    # a reread of everything), so nothing the flood causes can carry the real
    # change (a task) by chance: it comes from its own message, or from the
    # full reread the watcher does when it falls behind.
    flood = [json.dumps({"type": "config_change", "table": table, "key": key})
             for i in range(500) for table, key in (("cti_line", "junk%d" % (i % 20)), ("cti_line_group", "g1"))]
    sent, start = 0, time.monotonic()
    pipe = r.pipeline(transaction=False)
    while time.monotonic() - start < seconds:
        for msg in flood:
            pipe.publish("config@all", msg)
        pipe.execute()
        sent += len(flood)
        if rate:
            ahead = start + sent / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)       # pacing the publisher, not waiting for the daemon
    flood_s = time.monotonic() - start
    r.hset(TASKS, "t1", json.dumps({"params": task_params(enable=True)}))
    published_at = time.time()
    publish(r, "cti_queue_dialer_task", "t1")
    first = wait_for(lambda: sim.originates(), 15, message="the first originate after enabling t1")[0]
    latency = first.ts - published_at
    log = daemon.log()
    fault_report("flood %d msgs in %.1fs (%d/s); real change dialing %.3fs after its publish; "
                 "fell behind %d time(s)" % (sent, flood_s, sent / flood_s, latency,
                                             log.count("come faster than they can be read")))
    assert latency < 1.0
    wait_for(lambda: len(results(r)) == 1, 10)
    assert [o.number for o in sim.originates()] == ["5001"]
    assert sorted(status_written_after(r, time.time())) == ["t1"]
    assert "Redis unavailable" not in log


def test_a_task_named_with_invalid_utf8_is_rejected_and_the_rest_dials(r, sim, daemon, fault_report):
    basic_setup(r)
    r.hset(TASKS, b"bad\xff\xfe", json.dumps({"params": task_params(number_queue="queue:bad")}))
    r.hset("cti_line@%s" % DOMAIN, b"l\xff", json.dumps({"params": {"gateway": "sofia/gateway/gw1/", "limit": 1}}))
    put_task(r, "t1", task_params(limit=5), notify=False)
    publish(r, "cti_queue_dialer_task")
    publish(r, "cti_line")
    numbers = [str(70000 + i) for i in range(40)]
    push(r, "queue:bad", "79999")
    push(r, "queue:t1", *numbers)
    wait_for(lambda: len(results(r)) == len(numbers), 30, message="a result for each number of t1")
    dialed = collections.Counter(o.number for o in sim.originates())
    bad = {(x["kind"], x["name"]): x for x in rejected(r)}
    fault_report("N=%d dialed once=%d lost=%d duplicated=%d; rejected %s" % (
        len(numbers), sum(1 for n in numbers if dialed[n] == 1), sum(1 for n in numbers if not dialed[n]),
        sum(1 for n in numbers if dialed[n] > 1), sorted(bad)))
    assert all(dialed[n] == 1 for n in numbers) and set(dialed) == set(numbers)
    assert sorted(bad) == [("line", "l\\xff"), ("task", "bad\\xff\\xfe")]
    assert bad["task", "bad\\xff\\xfe"]["reason"] == "task name is not UTF-8"
    assert bad["task", "bad\\xff\\xfe"]["source"] == TASKS
    assert r.llen("queue:bad") == 1 and r.llen("queue:t1") == 0
    assert sorted(status_written_after(r, time.time())) == ["t1"]
