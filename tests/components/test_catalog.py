"""Catalog: parse, merge and report configuration; answer what may be dialed."""
import datetime
import json

import pytest

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


# --- hostile configuration (issue 12) ----------------------------------------------


def status_of(world):
    """Write the task status as housekeeping does; its hash's fields and its size in bytes."""
    from cti_dialer.housekeeping import Housekeeping
    if not hasattr(world, "housekeeping"):
        world.housekeeping = Housekeeping(config=world.config, store=world.store, catalog=world.catalog,
                                          tracker=world.tracker, writer=world.writer, health=world.health,
                                          esl=world.switch, tz=world.config.dialer_timezone)
    world.housekeeping.write_status(NOW)
    fields = world.r.hgetall(world.keys.task_status)
    return sorted(k.decode() for k in fields), sum(len(k) + len(v) for k, v in fields.items())


def test_a_change_naming_nothing_leaves_nothing_behind(world):
    world.line("l1", 2)
    world.group("g1", "l1")
    world.task("t1")
    world.catalog.reload_all(NOW)
    world.wakeups.take_tasks()
    junk = ["no such task", "x" * 128, "\x00", "名字", "bad\\xff"]
    for table in keymod.CONFIG_TABLES:
        for key in junk:
            world.catalog.apply(ConfigChange(table, key))
    assert set(world.catalog.tasks) == {"t1"} and not world.catalog.task_errors
    assert set(world.catalog.lines) == {"l1"} and set(world.catalog.groups) == {"g1"}
    assert not world.catalog.schedule_configs and not world.catalog.schedule_config_errors
    assert world.catalog._reported == {} and world.rejected() == []
    assert world.wakeups.take_tasks() == (True, set())       # lines & co. wake all; no task name kept
    names, size = status_of(world)
    assert names == ["t1"] and size < 1000


def test_a_deleted_broken_task_leaves_the_status(world):
    world.r.hset(world.keys.task_template, "broken", b"{")
    world.catalog.reload_all(NOW)
    assert status_of(world)[0] == ["broken"]
    world.r.hdel(world.keys.task_template, "broken")
    world.catalog.apply(ConfigChange(keymod.TASK_TABLE, "broken"))
    assert status_of(world)[0] == [] and world.catalog._reported == {}


@pytest.mark.parametrize("table, kind", [
    ("task_template", "task"), ("lines", "line"), ("groups", "group"), ("schedule_configs", "schedule_config")])
def test_a_name_that_is_not_utf8_is_rejected_once_and_nothing_is_kept(world, table, kind):
    world.line("l1", 2)
    world.group("g1", "l1")
    world.task("t1")
    good = {"task_template": world.r.hget(world.keys.task_template, "t1"),
            "lines": world.r.hget(world.keys.lines, "l1"), "groups": world.r.hget(world.keys.groups, "g1"),
            "schedule_configs": json.dumps({"params": {"line_group": ["g1"], "destination_extension": "1"}})}
    key = getattr(world.keys, table)
    world.r.hset(key, b"bad\xff", good[table])
    world.catalog.reload_all(NOW)
    world.catalog.reload_all(NOW + 1)
    rejected = world.rejected()
    assert [(r["kind"], r["name"], r["source"]) for r in rejected] == [(kind, "bad\\xff", key)]
    assert "name is not UTF-8" in rejected[0]["reason"]
    # Never under its display name, nor anywhere else.
    for state in (world.catalog.tasks, world.catalog.task_errors, world.catalog.lines, world.catalog.groups,
                  world.catalog.schedule_configs, world.catalog.schedule_config_errors):
        assert "bad\\xff" not in state and "bad\ufffd" not in state
    assert world.catalog.task_state("t1", at(NOW)) == ("running", "")
    assert status_of(world)[0] == ["t1"]
    # Deleted, it is forgotten; written again, it is reported again.
    world.r.hdel(key, b"bad\xff")
    world.catalog.reload_all(NOW + 2)
    assert world.catalog._reported == {}
    world.r.hset(key, b"bad\xff", good[table])
    world.catalog.reload_all(NOW + 3)
    assert len(world.rejected()) == 2


def test_a_display_name_is_never_looked_up(world):
    """A valid task literally named like the display form of an invalid one is its own task."""
    world.line("l1", 2)
    world.group("g1", "l1")
    world.task("bad\\xff")
    world.r.hset(world.keys.task_template, b"bad\xff", b"{")
    world.catalog.reload_all(NOW)
    assert set(world.catalog.tasks) == {"bad\\xff"} and not world.catalog.task_errors
    assert [r["reason"] for r in world.rejected()] == ["task name is not UTF-8"]


def test_huge_names_and_values_in_redis_give_short_records(world):
    world.line("l1", 2)
    world.group("g1", "l1")
    world.task("t1")
    huge = "n" * (512 * 1024)
    world.r.hset(world.keys.task_template, huge, b"{}")
    world.r.hset(world.keys.lines, "n" * 129, b"{}")
    world.task("t2", number_queue="q" * (512 * 1024))
    world.catalog.reload_all(NOW)
    rejected = {(r["kind"], r["name"][:3]): r for r in world.rejected()}
    assert len(world.rejected()) == 3 and set(rejected) == {("task", "nnn"), ("line", "nnn"), ("task", "t2")}
    for record in world.rejected():
        assert sum(len(v) for v in record.values()) < 3500, record
        assert len(record["reason"]) <= 520 and len(record["name"]) <= 220
    assert rejected["task", "nnn"]["reason"] == \
        "task name is 524288 bytes long; no name is longer than 128 characters"
    assert rejected["task", "t2"]["reason"].endswith("...(truncated)")
    names, size = status_of(world)
    assert names == ["t1", "t2"] and size < 3000       # t2 exists: an error, with its reason cut short


def test_a_change_without_a_key_rereads_everything(world):
    world.catalog.reload_all(NOW)
    world.line("l1", 2)
    world.group("g1", "l1")
    world.task("t1")
    world.catalog.apply(ConfigChange(keymod.TASK_TABLE, None))
    assert "t1" in world.catalog.tasks and "l1" in world.catalog.lines and "g1" in world.catalog.groups
    assert world.wakeups.take_tasks() == (True, set())


def test_tiers_and_disabled_groups_keep_their_group_positions(world):
    for name in ("p1", "p2", "b1", "x"):
        world.line(name, 2)
    world.r.hset(world.keys.groups, "tiered", json.dumps({"line": [["p1", "p2"], ["b1"]]}))
    world.r.hset(world.keys.groups, "off", json.dumps({"enable": False, "line": ["x"]}))
    world.task("t1", groups=("off", "tiered"))
    world.catalog.reload_all(NOW)
    candidates = world.catalog.candidates(world.catalog.tasks["t1"])
    assert candidates.groups == [[], [("p1", 2), ("p2", 2)], [("b1", 2)]]
    assert candidates.positions == [0, 1, 1]
    assert world.catalog.candidates(world.catalog.tasks["t1"], 1).positions == [0, 0]


def test_a_group_naming_a_line_that_does_not_exist_is_reported_once(world):
    world.line("p1", 2)
    world.r.hset(world.keys.groups, "tiered", json.dumps({"line": [["p1"], ["typo"]]}))
    world.task("t1", groups=("tiered",))
    world.catalog.reload_all(NOW)
    task = world.catalog.tasks["t1"]
    for _ in range(3):
        assert world.catalog.candidates(task).groups == [[("p1", 2)], []]
    reports = [rec for rec in world.rejected() if rec["kind"] == "group"]
    assert len(reports) == 1 and "line(s) 'typo' not in" in reports[0]["reason"]
    world.line("typo", 1)
    world.catalog.reload_all(NOW)
    assert world.catalog.candidates(task).groups == [[("p1", 2)], [("typo", 1)]]
    world.r.hdel(world.keys.lines, "typo")
    world.catalog.reload_all(NOW)
    world.catalog.candidates(task)
    assert len([rec for rec in world.rejected() if rec["kind"] == "group"]) == 2     # gone again: told again
