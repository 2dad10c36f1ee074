"""ConfigWatcher.loop(now): subscribe and reread, apply messages, reject bad ones, survive Redis loss."""
import pytest

from cti_dialer import keys as keymod, messages
from cti_dialer.config_watcher import (APPLIED_LOG_LIMIT, BEHIND_FOR, DRAIN_MAX, LOG_PERIOD, RECONNECT_FIRST,
                                       REJECT_LIMIT, REJECT_PERIOD, ConfigWatcher)

from .conftest import NOW
from .test_catalog import status_of


@pytest.fixture
def watcher(world):
    world.health.redis_ok.clear()
    return ConfigWatcher(redis_client=world.r, keys=world.keys, catalog=world.catalog, health=world.health,
                         message_wait=0)


def test_first_loop_subscribes_rereads_and_says_redis_is_up(world, watcher):
    world.task("t1")
    assert watcher.loop(NOW) == 0.0
    assert world.health.redis_ok.is_set() and world.health.redis_connects == 1
    assert "t1" in world.catalog.tasks
    assert world.r.pubsub_numsub(world.keys.channel_all) == [(world.keys.channel_all.encode(), 1)]


def test_a_message_rereads_its_entry(world, watcher):
    watcher.loop(NOW)
    world.task("t2", limit=7)
    world.r.publish(world.keys.channel_host, messages.config_change(keymod.TASK_TABLE, "t2"))
    for _ in range(3):       # the subscribe confirmation may come first
        watcher.loop(NOW)
    assert world.catalog.tasks["t2"].limit == 7


def test_a_bad_message_is_rejected_with_a_record(world, watcher):
    watcher.loop(NOW)
    world.r.publish(world.keys.channel_all, b'{"type": "config_change", "table": "nope"}')
    for _ in range(3):
        watcher.loop(NOW)
    assert [(r["kind"], r["source"]) for r in world.rejected()] == [("message", world.keys.channel_all)]
    assert "unknown table" in world.rejected()[0]["reason"]


def test_losing_redis_marks_it_down_and_backs_off(world, watcher):
    watcher.loop(NOW)
    world.server.connected = False
    later = NOW + world.config.dialer_reload_interval      # the periodic reread is due: it meets the outage
    assert watcher.loop(later) == RECONNECT_FIRST
    assert not world.health.redis_ok.is_set()
    assert watcher.loop(later) == RECONNECT_FIRST * 2
    world.server.connected = True
    world.task("t3")                          # written while the watcher was away
    assert watcher.loop(later) == 0.0
    assert world.health.redis_ok.is_set() and "t3" in world.catalog.tasks


# --- hostile messages (issue 12) ------------------------------------------------------


def counting(obj, name, calls):
    """Wrap obj.name so each call is appended to ``calls``."""
    real = getattr(obj, name)

    def wrapper(*args):
        calls.append((name, args))
        return real(*args)
    setattr(obj, name, wrapper)


def test_subscribe_confirmations_do_not_end_a_batch(world, watcher):
    world.task("t1", limit=1)
    watcher._subscribe(NOW)             # its confirmations are still waiting
    world.task("t1", limit=3)
    world.r.publish(world.keys.channel_all, messages.config_change(keymod.TASK_TABLE, "t1"))
    watcher.loop(NOW)
    assert world.catalog.tasks["t1"].limit == 3


def test_messages_with_huge_keys_leave_nothing_and_their_records_are_limited(world, watcher):
    world.line("l1", 2)
    world.group("g1", "l1")
    world.task("t1")
    watcher.loop(NOW)
    for i in range(20):
        key = "%02d" % i + "k" * (512 * 1024)
        world.r.publish(world.keys.channel_all, b'{"type":"config_change","table":"cti_queue_dialer_task","key":"%s"}'
                        % key.encode())
    for i in range(3):                  # under the limit on the other channel
        world.r.publish(world.keys.channel_host,
                        b'{"type":"config_change","table":"cti_queue_dialer_task","key":"%s"}' % (b"k" * 129))
    watcher.loop(NOW + 1)
    assert set(world.catalog.tasks) == {"t1"} and not world.catalog.task_errors and not world.catalog._reported
    rejected = world.rejected()
    by_channel = [r["source"] for r in rejected]
    assert by_channel == [world.keys.channel_all] * REJECT_LIMIT + [world.keys.channel_host] * 3
    for record in rejected:
        assert record["kind"] == "message" and sum(len(v) for v in record.values()) < 2500
    assert rejected[0]["reason"].startswith("message is 524") and len(rejected[0]["reason"]) < 100
    assert rejected[-1]["reason"] == "key is 129 characters long; no name is longer than 128"
    names, size = status_of(world)
    assert names == ["t1"] and size < 1000
    # The window's end: one record counts the rest.
    watcher.loop(NOW + REJECT_PERIOD)
    assert len(world.rejected()) == REJECT_LIMIT + 3
    watcher.loop(NOW + 1 + REJECT_PERIOD)
    summary = world.rejected()[-1]
    assert (summary["source"], summary["suppressed"]) == (world.keys.channel_all, "10")
    assert summary["reason"].startswith("10 more bad message(s) in 60s not recorded one by one")
    watcher.loop(NOW + 2 + 2 * REJECT_PERIOD)
    assert len(world.rejected()) == REJECT_LIMIT + 4 and not watcher.rejects


def test_a_flood_is_drained_and_coalesced_and_a_real_change_applies_at_once(world, watcher):
    world.line("l1", 2)
    world.group("g1", "l1")
    world.task("t1", limit=1)
    watcher.loop(NOW)
    calls = []
    for name in ("read_task", "read_tasks", "read_line", "read_lines"):
        counting(world.store, name, calls)
    pipe = world.r.pipeline(transaction=False)
    for i in range(DRAIN_MAX // 2 - 2):
        pipe.publish(world.keys.channel_all, messages.config_change(keymod.TASK_TABLE, "t1"))
        pipe.publish(world.keys.channel_host, messages.config_change(keymod.TASK_TABLE, "junk%d" % i))
    pipe.publish(world.keys.channel_all, messages.config_change(keymod.LINE_TABLE, "l1"))
    pipe.execute()
    world.task("t1", limit=7)
    world.r.publish(world.keys.channel_all, messages.config_change(keymod.TASK_TABLE, "t1"))
    watcher.loop(NOW + 1)           # one loop: the flood and the real change behind it
    assert world.catalog.tasks["t1"].limit == 7
    # Over MAX_KEYS_PER_TABLE task keys: one whole reread, which covers the line too.
    assert sorted(name for name, _ in calls) == ["read_lines", "read_tasks"]
    assert set(world.catalog.tasks) == {"t1"} and not world.catalog.task_errors
    assert world.wakeups.take_tasks()[0] is True


def test_a_batch_is_bounded_and_the_rest_waits_for_the_next_loop(world, watcher):
    world.task("t1", limit=1)
    watcher.loop(NOW)
    calls = []
    counting(world.catalog, "apply", calls)
    pipe = world.r.pipeline(transaction=False)
    for i in range(DRAIN_MAX + 5):
        pipe.publish(world.keys.channel_all, messages.config_change(keymod.TASK_TABLE, "t%d" % (i % 3)))
    pipe.execute()
    watcher.loop(NOW + 1)
    assert [args[0].key for _, args in calls] == ["t0", "t1", "t2"]
    watcher.loop(NOW + 1)
    assert len(calls) == 6
    watcher.loop(NOW + 1)
    assert len(calls) == 6


def test_a_due_full_reread_covers_the_waiting_messages(world, watcher):
    watcher.loop(NOW)
    calls = []
    counting(world.catalog, "apply", calls)
    world.task("t1")
    for _ in range(5):
        world.r.publish(world.keys.channel_all, messages.config_change(keymod.TASK_TABLE, "t1"))
    watcher.loop(NOW + world.config.dialer_reload_interval)
    assert calls == [] and "t1" in world.catalog.tasks


def test_when_it_falls_behind_it_drops_the_backlog_and_rereads_everything(world, watcher):
    world.line("l1", 2)
    world.group("g1", "l1")
    world.task("t1", limit=1)
    watcher.loop(NOW)
    health_before = world.health.redis_connects
    pipe = world.r.pipeline(transaction=False)
    for i in range(3 * DRAIN_MAX):     # few keys: no whole reread that would carry the real change
        pipe.publish(world.keys.channel_all, messages.config_change(keymod.LINE_TABLE, "junk%d" % (i % 20)))
    pipe.execute()
    world.task("t1", limit=9)           # the real change, behind the flood
    world.r.publish(world.keys.channel_all, messages.config_change(keymod.TASK_TABLE, "t1"))
    watcher.loop(NOW + 1)               # a full batch: maybe behind
    assert world.catalog.tasks["t1"].limit == 1
    watcher.loop(NOW + 1 + BEHIND_FOR)  # still full: behind; the rest is dropped, everything reread
    assert world.catalog.tasks["t1"].limit == 9
    assert world.health.redis_connects == health_before       # not a reconnection
    calls = []
    counting(world.catalog, "apply", calls)
    watcher.loop(NOW + 2)
    assert calls == []                  # nothing was left waiting
    world.r.publish(world.keys.channel_all, messages.config_change(keymod.TASK_TABLE, "t1"))
    watcher.loop(NOW + 3)
    assert len(calls) == 1              # subscribed again


def test_applied_changes_are_logged_at_info_a_few_times_a_minute(world, watcher, caplog):
    import logging
    caplog.set_level(logging.DEBUG, logger="cti_dialer")
    watcher.loop(NOW)
    for i in range(APPLIED_LOG_LIMIT + 5):
        world.r.publish(world.keys.channel_all, messages.config_change(keymod.LINE_TABLE, "l%d" % i))
        watcher.loop(NOW + 1)
    applied = [r for r in caplog.records if r.getMessage().endswith(" applied")]
    assert [r.levelno for r in applied] == [logging.INFO] * APPLIED_LOG_LIMIT + [logging.DEBUG] * 5
    watcher.loop(NOW + 1 + LOG_PERIOD)
    assert "config_change: 5 more batch(es) applied in 60s, logged at debug level only" in caplog.text


def test_bursts_it_keeps_up_with_are_not_a_backlog(world, watcher):
    world.task("t1", limit=1)
    watcher.loop(NOW)
    calls = []
    counting(world.catalog, "reload_all", calls)
    for step in range(4):
        pipe = world.r.pipeline(transaction=False)
        for i in range(DRAIN_MAX):
            pipe.publish(world.keys.channel_all, messages.config_change(keymod.LINE_TABLE, "l%d" % (i % 5)))
        pipe.execute()
        watcher.loop(NOW + 1 + step * BEHIND_FOR)
    assert calls == []
