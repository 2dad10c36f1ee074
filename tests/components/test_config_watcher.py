"""ConfigWatcher.loop(now): subscribe and reread, apply messages, reject bad ones, survive Redis loss."""
import pytest

from cti_dialer import keys as keymod, messages
from cti_dialer.config_watcher import RECONNECT_FIRST, ConfigWatcher

from .conftest import NOW


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
