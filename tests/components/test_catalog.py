"""Catalog: parse, merge and report configuration; answer what may be dialed."""
import datetime
import json

from cti_dialer import keys as keymod
from cti_dialer.messages import ConfigChange

from .conftest import NOW

UTC = datetime.timezone.utc


def at(ts):
    return datetime.datetime.fromtimestamp(ts, UTC)


def test_reload_reads_everything_and_wakes_everyone(world):
    world.line("l1", 2)
    world.group("g1", "l1")
    world.task("t1")
    world.catalog.initialize()
    assert set(world.catalog.tasks) == {"t1"} and set(world.catalog.lines) == {"l1"}
    assert world.catalog.loaded.is_set()
    assert world.wakeups.take_tasks() == (True, set())
    assert world.catalog.task_state("t1", at(NOW)) == ("running", "")


def test_a_bad_entry_is_reported_once_per_problem_and_the_rest_runs(world):
    world.line("l1", 2)
    world.r.hset(world.keys.lines, "bad", json.dumps({"params": {"gateway": "sofia/gw/x y/", "limit": 1}}))
    world.group("g1", "l1")
    world.task("t1")
    world.catalog.reload_all(NOW)
    world.catalog.reload_all(NOW + 1)
    rejected = world.rejected()
    assert [(r["kind"], r["name"]) for r in rejected] == [("line", "bad")]
    assert "l1" in world.catalog.lines and "bad" not in world.catalog.lines
    # A different problem with the same entry is a new record.
    world.r.hset(world.keys.lines, "bad", json.dumps({"params": {"gateway": "sofia/gw/x/"}}))
    world.catalog.reload_all(NOW + 2)
    assert len(world.rejected()) == 2 and "limit is missing" in world.rejected()[-1]["reason"]


def test_task_states(world):
    world.line("l1", 2)
    world.group("g1", "l1")
    world.task("paused", enable=False)
    world.task("later", start_time="2099-1-1 0:00")
    world.task("done", stop_time="2000-1-1 0:00")
    world.task("nolines", groups=("missing",))
    world.r.hset(world.keys.task_template, "broken", b"{not json")
    world.catalog.reload_all(NOW)
    states = {name: world.catalog.task_state(name, at(NOW))[0]
              for name in ("paused", "later", "done", "nolines", "broken", "gone")}
    assert states == {"paused": "paused", "later": "waiting", "done": "finished", "nolines": "waiting",
                      "broken": "error", "gone": "deleted"}


def test_apply_rereads_one_entry_and_wakes_who_it_concerns(world):
    world.line("l1", 2)
    world.group("g1", "l1")
    world.task("t1", limit=1)
    world.task("t2")
    world.catalog.reload_all(NOW)
    world.wakeups.take_tasks()
    world.task("t1", limit=5)
    world.catalog.apply(ConfigChange(keymod.TASK_TABLE, "t1"))
    assert world.catalog.tasks["t1"].limit == 5
    assert world.wakeups.take_tasks() == (False, {"t1"})
    world.r.hdel(world.keys.lines, "l1")
    world.catalog.apply(ConfigChange(keymod.LINE_TABLE, "l1"))
    assert "l1" not in world.catalog.lines
    assert world.wakeups.take_tasks() == (True, set())
    assert world.catalog.task_state("t1", at(NOW)) == ("waiting", "no enabled line in its line groups")


def test_loop_rereads_only_when_due(world):
    world.catalog.reload_all(NOW)
    interval = world.config.dialer_reload_interval
    world.task("t1")
    assert world.catalog.loop(NOW + 1) == interval - 1
    assert "t1" not in world.catalog.tasks
    assert world.catalog.loop(NOW + interval) == interval
    assert "t1" in world.catalog.tasks


def test_candidates_keep_group_positions_and_skip_disabled_lines(world):
    world.line("l1", 2)
    world.line("l2", 3)
    world.r.hset(world.keys.lines, "off", json.dumps({"params": {"gateway": "sofia/gateway/x/", "limit": 4,
                                                                  "enable": False}}))
    world.group("g1", "off")
    world.group("g2", "l1", "l2")
    world.task("t1", groups=("g1", "g2"))
    world.catalog.reload_all(NOW)
    task = world.catalog.tasks["t1"]
    assert world.catalog.candidates(task).groups == [[], [("l1", 2), ("l2", 3)]]
    assert world.catalog.candidates(task, 1).groups == [[("l1", 2), ("l2", 3)]]
