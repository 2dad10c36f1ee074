"""Calling hours in the callee's zone: zones from the number, the most restrictive window, the next opening."""
import datetime
import json
import zoneinfo

import pytest

from cti_dialer import callee_time, model

pytestmark = pytest.mark.unit
UTC = zoneinfo.ZoneInfo("UTC")
HOURS = {"work_hour": [{"begin": "9:00", "end": "18:00"}], "work_week": [1, 2, 3, 4, 5]}


def hours(region="", **params):
    return callee_time.parse({"region": region} if region else True, {**HOURS, **params})


def at(text, zone="UTC"):
    return datetime.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(zone)).timestamp()


@pytest.mark.parametrize("number, region, zones", [
    ("+12125550123", "", ("America/New_York",)),
    ("0012125550123", "", ("America/New_York",)),          # 00 is the international prefix
    ("2125550123", "US", ("America/New_York",)),            # national format, with the task's region
    ("2125550123", "", ()),                                 # no region: cannot place it
    ("+442071234567", "", ("Europe/London",)),
    ("+15555550123", "", ()),                               # the library knows no zone: unknown
    ("not a number", "US", ()),
])
def test_zones_for(number, region, zones):
    assert callee_time.zones_for(number, region) == zones


def test_open_in_the_callees_zone_not_the_dialers():
    h = hours()
    ny = ("America/New_York",)
    # Monday 2026-11-30 14:00 UTC is 09:00 in New York: open there, closed before.
    assert h.is_open(ny, at("2026-11-30T14:00:00"))
    assert not h.is_open(ny, at("2026-11-30T13:59:59"))
    assert h.next_open(ny, at("2026-11-30T12:00:00")) == at("2026-11-30T09:00:00", "America/New_York")


def test_an_ambiguous_number_waits_for_every_zone_it_may_be_in():
    h = hours()
    zones = ("America/New_York", "America/Los_Angeles")
    opens = h.next_open(zones, at("2026-11-30T12:00:00"))
    assert opens == at("2026-11-30T09:00:00", "America/Los_Angeles")    # the later opening of the two
    assert not h.is_open(zones, at("2026-11-30T15:00:00"))                # open in New York only


def test_hours_that_never_meet_are_never_open():
    h = hours()
    assert h.next_open(("Pacific/Honolulu", "Asia/Tokyo", "Europe/London"), at("2026-11-30T12:00:00")) is None


def test_weekends_and_holidays_are_the_callees():
    h = hours(holiday=[{"begin": "2026-12-01 00:00", "end": "2026-12-02 00:00"}])
    tokyo = ("Asia/Tokyo",)
    # Friday 2026-12-04 18:00 in Tokyo closes; Monday 09:00 opens.
    assert h.next_open(tokyo, at("2026-12-04T18:30:00", "Asia/Tokyo")) == at("2026-12-07T09:00:00", "Asia/Tokyo")
    # Tuesday 2026-12-01 is a holiday in the callee's own calendar day.
    assert h.next_open(tokyo, at("2026-12-01T08:00:00", "Asia/Tokyo")) == at("2026-12-02T09:00:00", "Asia/Tokyo")


def test_the_task_keeps_its_bounds_and_leaves_hours_to_the_callee():
    raw = json.dumps({"params": {"line_group": ["g"], "number_queue": "q", "destination_extension": "1",
                                 "callee_time": {"region": "us"}, "stop_time": "2026-12-31 00:00", **HOURS}})
    task = model.merge_task("t", raw, None, UTC)
    assert task.callee.region == "US"
    assert task.window.hours == ()                 # the task's own window: the whole day, every day
    assert task.window.stop is not None


@pytest.mark.parametrize("value, reason", [
    ("yes", "callee_time must be true"), ({"region": "XX"}, "ISO country code"),
    ({"zone": "US"}, "unknown fields zone"),
])
def test_callee_time_errors(value, reason):
    raw = json.dumps({"params": {"line_group": ["g"], "number_queue": "q", "destination_extension": "1",
                                 "callee_time": value}})
    with pytest.raises(model.ModelError) as info:
        model.merge_task("t", raw, None, UTC)
    assert reason in str(info.value)
