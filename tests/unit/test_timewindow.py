import dataclasses
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from dateutil import tz as dateutil_tz
from hypothesis import given, settings
from hypothesis import strategies as st

from cti_dialer.timewindow import (
    ALWAYS_OPEN,
    State,
    Window,
    WindowError,
    is_open,
    next_change,
    parse_window,
    state,
)

pytestmark = pytest.mark.unit

UTC = timezone.utc
SHANGHAI = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")

OPEN = State.OPEN
BEFORE = State.BEFORE_START
FINISHED = State.FINISHED
HOLIDAY = State.HOLIDAY
OFF_DAY = State.OFF_DAY
OFF_HOURS = State.OFF_HOURS


def local(text, tz=SHANGHAI):
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def utc(text):
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def hours(*pairs):
    return [{"begin": b, "end": e} for b, e in pairs]


def on(wday, *pairs):
    """Ranges for one weekday, as mod_cti writes them (``wday`` a str or an int)."""
    return [dict(r, wday=wday) for r in hours(*pairs)]


# 2020-01-20 is a Monday.
SEED = {
    "start_time": "2020-1-20 12:00",
    "stop_time": "2020-1-22 12:00",
    "work_hour": hours(("8:00", "12:00"), ("14:00", "18:00")),
    "work_week": [1, 2, 3, 4, 5],
    "holiday": [{"begin": "2020-1-20 12:00", "end": "2020-1-21 12:00"}],
}
DAY = {"work_hour": hours(("8:00", "12:00"), ("14:00", "18:00"))}
NIGHT = {"work_hour": hours(("22:00", "6:00"))}
FRIDAY_NIGHT = {"work_hour": hours(("22:00", "06:00")), "work_week": [5]}
WEEKDAY_NIGHTS = {"work_hour": hours(("22:00", "6:00")), "work_week": [1, 2, 3, 4, 5]}
MONDAY_FROM_8 = {"work_hour": hours(("8:00", "8:00")), "work_week": [1]}
TO_MIDNIGHT = {"work_hour": hours(("18:00", "24:00"))}
SECONDS = {"work_hour": hours(("8:00:30", "08:01"))}
HOLIDAY_ONLY = {"holiday": [{"begin": "2020-1-20 12:00", "end": "2020-1-21 12:00"}]}
START_STOP = {"start_time": "2020-1-20 12:00", "stop_time": "2020-01-22 12:00:00"}
# Monday-Friday 8:00-18:00, Saturday 10:00-14:00, Sunday nothing.
WEEK_AND_SATURDAY = {"work_hour": [
    *(r for day in (1, "2", 3, "4", 5) for r in on(day, ("8:00", "18:00"))),
    *on("6", ("10:00", "14:00"))]}
ONLY_TUESDAY = {"work_hour": on(2, ("8:00", "9:00"))}
TUESDAY_OFF = dict(ONLY_TUESDAY, holiday=[{"begin": "2020-1-28", "end": "2020-1-29"}])
FRIDAY_NIGHT_WDAY = {"work_hour": on(5, ("22:00", "2:00"))}
FRIDAY_AND_SATURDAY_NIGHT = {"work_hour": on(5, ("22:00", "2:00")) + on(6, ("22:00", "23:00"))}

STATE_CASES = [
    # range crossing midnight: begin inclusive, end exclusive, both sides
    (NIGHT, "2020-01-20 21:59:59", OFF_HOURS),
    (NIGHT, "2020-01-20 22:00", OPEN),
    (NIGHT, "2020-01-20 23:59:59", OPEN),
    (NIGHT, "2020-01-21 00:00", OPEN),
    (NIGHT, "2020-01-21 05:59:59", OPEN),
    (NIGHT, "2020-01-21 06:00", OFF_HOURS),
    # plain ranges
    (DAY, "2020-01-20 07:59:59", OFF_HOURS),
    (DAY, "2020-01-20 08:00", OPEN),
    (DAY, "2020-01-20 11:59:59", OPEN),
    (DAY, "2020-01-20 12:00", OFF_HOURS),
    (DAY, "2020-01-20 13:59:59", OFF_HOURS),
    (DAY, "2020-01-20 14:00", OPEN),
    (DAY, "2020-01-20 18:00", OFF_HOURS),
    # the day a cross-midnight range begins decides
    (FRIDAY_NIGHT, "2020-01-23 23:00", OFF_DAY),    # Thursday's shift
    (FRIDAY_NIGHT, "2020-01-24 02:00", OFF_DAY),    # still Thursday's shift
    (FRIDAY_NIGHT, "2020-01-24 12:00", OFF_HOURS),
    (FRIDAY_NIGHT, "2020-01-24 22:00", OPEN),
    (FRIDAY_NIGHT, "2020-01-25 02:00", OPEN),       # Saturday, Friday's shift
    (FRIDAY_NIGHT, "2020-01-25 05:59:59", OPEN),
    (FRIDAY_NIGHT, "2020-01-25 06:00", OFF_DAY),
    (FRIDAY_NIGHT, "2020-01-25 22:00", OFF_DAY),    # Saturday's own shift
    (FRIDAY_NIGHT, "2020-01-26 02:00", OFF_DAY),
    (WEEKDAY_NIGHTS, "2020-01-20 02:00", OFF_DAY),  # Monday, Sunday's shift
    (WEEKDAY_NIGHTS, "2020-01-20 12:00", OFF_HOURS),
    (WEEKDAY_NIGHTS, "2020-01-20 22:00", OPEN),
    (WEEKDAY_NIGHTS, "2020-01-25 02:00", OPEN),
    (WEEKDAY_NIGHTS, "2020-01-25 22:00", OFF_DAY),
    # begin == end: 24 hours from begin, attributed to the day it begins
    (MONDAY_FROM_8, "2020-01-20 07:59:59", OFF_DAY),
    (MONDAY_FROM_8, "2020-01-20 08:00", OPEN),
    (MONDAY_FROM_8, "2020-01-21 07:59:59", OPEN),
    (MONDAY_FROM_8, "2020-01-21 08:00", OFF_DAY),
    # 24:00 as an end
    (TO_MIDNIGHT, "2020-01-20 17:59:59", OFF_HOURS),
    (TO_MIDNIGHT, "2020-01-20 18:00", OPEN),
    (TO_MIDNIGHT, "2020-01-20 23:59:59", OPEN),
    (TO_MIDNIGHT, "2020-01-21 00:00", OFF_HOURS),
    # seconds
    (SECONDS, "2020-01-20 08:00:29", OFF_HOURS),
    (SECONDS, "2020-01-20 08:00:30", OPEN),
    (SECONDS, "2020-01-20 08:00:59", OPEN),
    (SECONDS, "2020-01-20 08:01", OFF_HOURS),
    # weekdays: 0 and 7 are Sunday; without work_hour the instant's own day
    ({"work_week": [0]}, "2020-01-18 23:59:59", OFF_DAY),
    ({"work_week": [0]}, "2020-01-19 00:00", OPEN),
    ({"work_week": [0]}, "2020-01-19 23:59:59", OPEN),
    ({"work_week": [0]}, "2020-01-20 00:00", OFF_DAY),
    ({"work_week": [7]}, "2020-01-19 12:00", OPEN),
    ({"work_week": [7]}, "2020-01-20 12:00", OFF_DAY),
    ({"work_week": [6]}, "2020-01-25 12:00", OPEN),
    ({"work_week": [1]}, "2020-01-20 12:00", OPEN),
    ({"work_week": []}, "2020-01-20 12:00", OFF_DAY),
    ({"work_week": [], "work_hour": hours(("0:00", "24:00"))}, "2020-01-20 12:00", OFF_DAY),
    ({"work_hour": [], "work_week": [1]}, "2020-01-20 00:00", OPEN),
    ({"work_hour": [], "work_week": [1]}, "2020-01-20 23:59:59", OPEN),
    ({"work_hour": [], "work_week": [1]}, "2020-01-21 00:00", OFF_DAY),
    ({"work_time": hours(("8:00", "12:00"))}, "2020-01-20 08:00", OPEN),
    ({"work_time": hours(("8:00", "12:00"))}, "2020-01-20 12:00", OFF_HOURS),
    # holiday edges
    (HOLIDAY_ONLY, "2020-01-20 11:59:59", OPEN),
    (HOLIDAY_ONLY, "2020-01-20 12:00", HOLIDAY),
    (HOLIDAY_ONLY, "2020-01-21 11:59:59", HOLIDAY),
    (HOLIDAY_ONLY, "2020-01-21 12:00", OPEN),
    # start / stop edges
    (START_STOP, "2020-01-20 11:59:59", BEFORE),
    (START_STOP, "2020-01-20 12:00", OPEN),
    (START_STOP, "2020-01-22 11:59:59", OPEN),
    (START_STOP, "2020-01-22 12:00", FINISHED),
    (START_STOP, "2030-01-01 00:00", FINISHED),
    # the seed task, and precedence
    (SEED, "2020-01-19 12:00", BEFORE),
    (SEED, "2020-01-20 12:00", HOLIDAY),
    (SEED, "2020-01-21 10:00", HOLIDAY),
    (SEED, "2020-01-21 12:00", OFF_HOURS),
    (SEED, "2020-01-21 14:00", OPEN),
    (SEED, "2020-01-21 18:00", OFF_HOURS),
    (SEED, "2020-01-22 08:00", OPEN),
    (SEED, "2020-01-22 12:00", FINISHED),
    ({"start_time": "2020-1-21", "holiday": [{"begin": "2020-1-20", "end": "2020-1-22"}]},
     "2020-01-20 12:00", BEFORE),
    ({"stop_time": "2020-1-21", "holiday": [{"begin": "2020-1-20", "end": "2020-1-22"}]},
     "2020-01-21 12:00", FINISHED),
    ({"start_time": "2020-1-25", "stop_time": "2020-1-20"}, "2020-01-22 12:00", FINISHED),
    ({"work_week": [1, 2, 3, 4, 5], "holiday": [{"begin": "2020-1-25", "end": "2020-1-27"}]},
     "2020-01-25 12:00", HOLIDAY),
    ({"work_week": [6], "work_hour": hours(("8:00", "9:00"))}, "2020-01-20 12:00", OFF_DAY),
    ({"stop_time": "2020-1-20", "work_week": []}, "2020-01-20 12:00", FINISHED),
    # wday: a range applies on its weekday only (2020-01-25 is a Saturday)
    (WEEK_AND_SATURDAY, "2020-01-20 07:59:59", OFF_HOURS),
    (WEEK_AND_SATURDAY, "2020-01-20 08:00", OPEN),
    (WEEK_AND_SATURDAY, "2020-01-22 12:00", OPEN),
    (WEEK_AND_SATURDAY, "2020-01-24 17:59:59", OPEN),
    (WEEK_AND_SATURDAY, "2020-01-24 18:00", OFF_HOURS),
    (WEEK_AND_SATURDAY, "2020-01-25 08:00", OFF_HOURS),  # weekday hours not on Saturday
    (WEEK_AND_SATURDAY, "2020-01-25 10:00", OPEN),
    (WEEK_AND_SATURDAY, "2020-01-25 13:59:59", OPEN),
    (WEEK_AND_SATURDAY, "2020-01-25 14:00", OFF_HOURS),
    (WEEK_AND_SATURDAY, "2020-01-25 15:00", OFF_HOURS),
    (WEEK_AND_SATURDAY, "2020-01-26 12:00", OFF_DAY),    # no range begins on Sunday
    (ONLY_TUESDAY, "2020-01-21 08:00", OPEN),
    (ONLY_TUESDAY, "2020-01-21 09:00", OFF_HOURS),
    (ONLY_TUESDAY, "2020-01-20 08:00", OFF_DAY),
    (ONLY_TUESDAY, "2020-01-22 08:30", OFF_DAY),
    # wday absent or -1: every day
    ({"work_hour": on(-1, ("8:00", "9:00"))}, "2020-01-19 08:00", OPEN),
    ({"work_hour": on("-1", ("8:00", "9:00"))}, "2020-01-25 08:00", OPEN),
    ({"work_hour": on(None, ("8:00", "9:00"))}, "2020-01-22 08:00", OPEN),
    ({"work_hour": on(7, ("8:00", "9:00"))}, "2020-01-19 08:00", OPEN),
    ({"work_hour": on("0", ("8:00", "9:00")) + hours(("12:00", "13:00"))},
     "2020-01-20 12:30", OPEN),
    ({"work_hour": on("0", ("8:00", "9:00")) + hours(("12:00", "13:00"))},
     "2020-01-20 08:30", OFF_HOURS),
    # work_week closes a day a wday range names
    (dict(WEEK_AND_SATURDAY, work_week=[1, 2, 3, 4, 5]), "2020-01-25 11:00", OFF_DAY),
    (dict(WEEK_AND_SATURDAY, work_week=[1, 2, 3, 4, 5]), "2020-01-24 11:00", OPEN),
    (dict(ONLY_TUESDAY, work_week=[1, 3]), "2020-01-21 08:00", OFF_DAY),
    # holidays over a wday range
    (dict(WEEK_AND_SATURDAY, holiday=[{"begin": "2020-1-25", "end": "2020-1-26"}]),
     "2020-01-25 11:00", HOLIDAY),
    (dict(WEEK_AND_SATURDAY, holiday=[{"begin": "2020-1-25 11:00", "end": "2020-1-25 12:00"}]),
     "2020-01-25 10:59:59", OPEN),
    (dict(WEEK_AND_SATURDAY, holiday=[{"begin": "2020-1-25 11:00", "end": "2020-1-25 12:00"}]),
     "2020-01-25 11:30", HOLIDAY),
    (dict(WEEK_AND_SATURDAY, holiday=[{"begin": "2020-1-25 11:00", "end": "2020-1-25 12:00"}]),
     "2020-01-25 12:00", OPEN),
    # a midnight-crossing wday range belongs to the day it begins on
    (FRIDAY_NIGHT_WDAY, "2020-01-24 21:59:59", OFF_HOURS),
    (FRIDAY_NIGHT_WDAY, "2020-01-24 22:00", OPEN),
    (FRIDAY_NIGHT_WDAY, "2020-01-25 01:00", OPEN),       # Saturday, Friday's range
    (FRIDAY_NIGHT_WDAY, "2020-01-25 01:59:59", OPEN),
    (FRIDAY_NIGHT_WDAY, "2020-01-25 02:00", OFF_DAY),
    (FRIDAY_NIGHT_WDAY, "2020-01-25 22:30", OFF_DAY),
    (FRIDAY_NIGHT_WDAY, "2020-01-24 01:00", OFF_HOURS),  # Friday, no Thursday range
    (FRIDAY_NIGHT_WDAY, "2020-01-23 23:00", OFF_DAY),
    (FRIDAY_AND_SATURDAY_NIGHT, "2020-01-25 01:00", OPEN),
    (FRIDAY_AND_SATURDAY_NIGHT, "2020-01-25 22:30", OPEN),
    (FRIDAY_AND_SATURDAY_NIGHT, "2020-01-25 23:00", OFF_HOURS),
    (FRIDAY_AND_SATURDAY_NIGHT, "2020-01-26 00:30", OFF_DAY),
    (dict(FRIDAY_NIGHT_WDAY, work_week=[5]), "2020-01-25 01:00", OPEN),
    (dict(FRIDAY_NIGHT_WDAY, work_week=[6]), "2020-01-25 01:00", OFF_DAY),
    ({"work_hour": on("0", ("22:00", "2:00"))}, "2020-01-20 01:00", OPEN),  # Sunday's, on Monday
    ({"work_hour": on("0", ("22:00", "2:00"))}, "2020-01-19 01:00", OFF_HOURS),
]


@pytest.mark.parametrize("params, when, expected", STATE_CASES)
def test_state(params, when, expected):
    window = parse_window(params, SHANGHAI)
    now = local(when)
    assert state(window, now) is expected
    assert is_open(window, now) is (expected is OPEN)


@pytest.mark.parametrize("a, b", [
    ({"start_time": "2020-1-20 8:00"}, {"start_time": "2020-01-20 08:00"}),
    ({"start_time": "2020-1-20 8:00"}, {"start_time": "2020-01-20 08:00:00"}),
    ({"start_time": "2020-1-2 8:05:09"}, {"start_time": "2020-01-02 08:05:09"}),
    ({"stop_time": "2020-1-20"}, {"stop_time": "2020-01-20 00:00"}),
    ({"stop_time": "2020-1-20 24:00"}, {"stop_time": "2020-1-21 0:00"}),
    ({"work_hour": hours(("8:00", "9:30"))}, {"work_hour": hours(("08:00", "09:30:00"))}),
    ({"work_hour": hours(("18:00", "24:00"))}, {"work_hour": hours(("18:00", "24:00:00"))}),
    ({"work_hour": hours(("18:00", "24:00"))}, {"work_hour": hours(("18:00", "0:00"))}),
    ({"work_hour": hours(("8:00", "9:00"))}, {"work_time": hours(("8:00", "9:00"))}),
    ({"work_week": [0]}, {"work_week": [7]}),
    ({"work_week": [0]}, {"work_week": [0, 7, 0]}),
    ({"work_week": [0, 1, 2, 3, 4, 5, 6]}, {}),
    ({"work_hour": hours(("0:00", "24:00"))}, {}),
    ({"work_hour": hours(("0:00", "0:00"))}, {"work_hour": []}),
    ({"start_time": None, "work_week": None, "work_hour": None, "holiday": None}, {}),
    ({"work_hour": [], "work_time": None}, {}),
    ({"max_calls": 30, "caller_id": "x"}, {}),
    ({"holiday": [{"begin": "2020-1-20", "end": "2020-1-20"}]}, {}),
    ({"work_hour": [{"begin": "8:00", "end": "9:00", "note": "am"}]},
     {"work_hour": hours(("8:00", "9:00"))}),
    # wday: absent, null and -1 are every day; "3" is 3; 7 is 0
    ({"work_hour": on(-1, ("8:00", "9:00"))}, {"work_hour": hours(("8:00", "9:00"))}),
    ({"work_hour": on("-1", ("8:00", "9:00"))}, {"work_hour": hours(("8:00", "9:00"))}),
    ({"work_hour": on(None, ("8:00", "9:00"))}, {"work_hour": hours(("8:00", "9:00"))}),
    ({"work_hour": [r for d in range(7) for r in on(d, ("8:00", "9:00"))]},
     {"work_hour": hours(("8:00", "9:00"))}),
    ({"work_hour": on("3", ("8:00", "9:00"))}, {"work_hour": on(3, ("8:00", "9:00"))}),
    ({"work_hour": on(7, ("8:00", "9:00"))}, {"work_hour": on("0", ("8:00", "9:00"))}),
    ({"work_time": on(3, ("8:00", "9:00"))}, {"work_hour": on(3, ("8:00", "9:00"))}),
    # a day no range begins on is closed, as if work_week left it out
    (WEEK_AND_SATURDAY, dict(WEEK_AND_SATURDAY, work_week=[1, 2, 3, 4, 5, 6])),
    ({"work_hour": on(1, ("0:00", "24:00")) + on(3, ("0:00", "0:00"))}, {"work_week": [1, 3]}),
    ({"work_hour": on(2, ("8:00", "9:00")), "work_week": [1]}, {"work_week": []}),
])
def test_equivalent_forms(a, b):
    assert parse_window(a, SHANGHAI) == parse_window(b, SHANGHAI)


def test_always_open():
    assert parse_window({}, BERLIN) == ALWAYS_OPEN
    assert parse_window({"work_week": [0, 1, 2, 3, 4, 5, 6]}, NEW_YORK) == ALWAYS_OPEN
    assert state(ALWAYS_OPEN, utc("2020-01-20 00:00")) is OPEN
    assert next_change(ALWAYS_OPEN, utc("2020-01-20 00:00")) is None


def test_window_is_immutable_and_hashable():
    window = parse_window(SEED, SHANGHAI)
    with pytest.raises(dataclasses.FrozenInstanceError):
        window.start = None
    assert {window: 1}[parse_window(dict(SEED), SHANGHAI)] == 1
    # dateutil's tzfile is unhashable; the window must still be usable as a key.
    assert hash(parse_window(SEED, dateutil_tz.gettz("Asia/Shanghai")))
    assert isinstance(window, Window)


def test_state_values_are_the_stored_strings():
    assert [s.value for s in State] == [
        "open", "before_start", "finished", "holiday", "off_day", "off_hours"]
    assert State("off_hours") is OFF_HOURS
    assert OPEN == "open"


ERROR_CASES = [
    ({"work_hour": hours(("8:00", "12:00"), ("14:00", "25:00"))},
     "work_hour[1].end: '25:00' is not a time of day (H:MM or H:MM:SS)"),
    ({"work_hour": hours(("24:00", "8:00"))},
     "work_hour[0].begin: '24:00' is only allowed as an end"),
    ({"work_hour": hours(("8:60", "9:00"))}, "work_hour[0].begin: '8:60' is not a time of day"),
    ({"work_hour": hours(("8:0", "9:00"))}, "work_hour[0].begin: '8:0' is not a time of day"),
    ({"work_hour": hours(("8h", "9:00"))}, "work_hour[0].begin: '8h' is not a time of day"),
    ({"work_hour": hours((" 8:00", "9:00"))}, "work_hour[0].begin: ' 8:00' is not a time of day"),
    ({"work_hour": hours(("8:00:60", "9:00"))}, "work_hour[0].begin: '8:00:60' is not a time"),
    ({"work_hour": hours(("-1:00", "9:00"))}, "work_hour[0].begin: '-1:00' is not a time"),
    ({"work_hour": hours(("24:01", "9:00"))}, "work_hour[0].begin: '24:01' is not a time"),
    ({"work_hour": hours(("\u0668:00", "9:00"))}, "work_hour[0].begin: '\u0668:00' is not a time"),
    ({"work_hour": hours(("8:00", ""))}, "work_hour[0].end: '' is not a time"),
    ({"work_hour": [{"begin": 8, "end": "9:00"}]},
     "work_hour[0].begin: expected a string (H:MM or H:MM:SS), got int 8"),
    ({"work_hour": [{"begin": "8:00"}]}, 'work_hour[0]: missing "end"'),
    ({"work_hour": [{"end": "8:00"}]}, 'work_hour[0]: missing "begin"'),
    ({"work_hour": ["8:00-12:00"]}, "work_hour[0]: expected an object"),
    ({"work_hour": "8:00-12:00"}, "work_hour: expected a list"),
    ({"work_hour": {"begin": "8:00", "end": "9:00"}}, "work_hour: expected a list"),
    ({"work_time": hours(("8:00", "9:99"))}, "work_time[0].end: '9:99' is not a time"),
    ({"work_hour": [], "work_time": []}, "work_hour and work_time are both given"),
    ({"work_week": "12345"}, "work_week: expected a list of weekday numbers 0-7, got str"),
    ({"work_week": [1, 8]}, "work_week[1]: 8 is not a weekday (0-7, 0 and 7 = Sunday)"),
    ({"work_week": [-1]}, "work_week[0]: -1 is not a weekday"),
    ({"work_week": [True]}, "work_week[0]: expected an int 0-7 (0 and 7 = Sunday), got bool True"),
    ({"work_week": [1.0]}, "work_week[0]: expected an int 0-7 (0 and 7 = Sunday), got float 1.0"),
    ({"work_week": ["1"]}, "work_week[0]: expected an int 0-7 (0 and 7 = Sunday), got str '1'"),
    ({"start_time": "2020/1/20"},
     "start_time: '2020/1/20' is not a date-time "
     "(YYYY-M-D, YYYY-M-D H:MM or YYYY-M-D H:MM:SS)"),
    ({"start_time": "2020-1-20T08:00"}, "start_time: '2020-1-20T08:00' is not a date-time"),
    ({"start_time": "20-1-20"}, "start_time: '20-1-20' is not a date-time"),
    ({"start_time": "2020-1-20 8"}, "start_time: '2020-1-20 8' is not a date-time"),
    ({"start_time": "2020-1-20 25:00"}, "start_time: '2020-1-20 25:00' has no valid time of day"),
    ({"start_time": "2020-13-01"},
     "start_time: '2020-13-01' is not a valid date (month must be in 1..12)"),
    ({"stop_time": "2020-2-30"}, "stop_time: '2020-2-30' is not a valid date"),
    ({"stop_time": "2020-2-3 8:00:61"}, "stop_time: '2020-2-3 8:00:61' has no valid time"),
    ({"stop_time": "9999-12-31 24:00"}, "stop_time: '9999-12-31 24:00' is out of range"),
    ({"stop_time": 20200120},
     "stop_time: expected a string (YYYY-M-D, YYYY-M-D H:MM or YYYY-M-D H:MM:SS), "
     "got int 20200120"),
    ({"holiday": [{"begin": "2020-1-21", "end": "2020-1-20 23:59"}]},
     "holiday[0]: end '2020-1-20 23:59' is before begin '2020-1-21'"),
    ({"holiday": [{"begin": "2020-1-21", "end": "2020-1-22"}, {"begin": "2020-1-21"}]},
     'holiday[1]: missing "end"'),
    ({"holiday": [{"begin": "2020-1-21", "end": "tomorrow"}]},
     "holiday[0].end: 'tomorrow' is not a date-time"),
    ({"holiday": {"begin": "2020-1-21", "end": "2020-1-22"}}, "holiday: expected a list"),
    ({"holiday": ["2020-1-21"]}, "holiday[0]: expected an object"),
    ({"work_hour": on(9, ("8:00", "9:00"))},
     "work_hour[0].wday: 9 is not a weekday (0-7, 0 and 7 = Sunday, -1 = every day)"),
    ({"work_hour": on(8, ("8:00", "9:00"))}, "work_hour[0].wday: 8 is not a weekday"),
    ({"work_hour": on(-2, ("8:00", "9:00"))}, "work_hour[0].wday: -2 is not a weekday"),
    ({"work_hour": on("9", ("8:00", "9:00"))}, "work_hour[0].wday: '9' is not a weekday"),
    ({"work_hour": on("-2", ("8:00", "9:00"))}, "work_hour[0].wday: '-2' is not a weekday"),
    ({"work_hour": on("x", ("8:00", "9:00"))},
     "work_hour[0].wday: 'x' is not a weekday (0-7, 0 and 7 = Sunday, -1 = every day)"),
    ({"work_hour": on("", ("8:00", "9:00"))}, "work_hour[0].wday: '' is not a weekday"),
    ({"work_hour": on(" 3", ("8:00", "9:00"))}, "work_hour[0].wday: ' 3' is not a weekday"),
    ({"work_hour": on("1.5", ("8:00", "9:00"))}, "work_hour[0].wday: '1.5' is not a weekday"),
    ({"work_hour": on("9" * 5000, ("8:00", "9:00"))}, "work_hour[0].wday: '999"),
    ({"work_hour": on(1.5, ("8:00", "9:00"))},
     "work_hour[0].wday: expected an int or a string "
     "(0-7, 0 and 7 = Sunday, -1 = every day), got float 1.5"),
    ({"work_hour": on(3.0, ("8:00", "9:00"))}, "work_hour[0].wday: expected an int or a string"),
    ({"work_hour": on(True, ("8:00", "9:00"))},
     "work_hour[0].wday: expected an int or a string "
     "(0-7, 0 and 7 = Sunday, -1 = every day), got bool True"),
    ({"work_hour": on(False, ("8:00", "9:00"))}, "work_hour[0].wday: expected an int"),
    ({"work_hour": on([3], ("8:00", "9:00"))}, "work_hour[0].wday: expected an int"),
    ({"work_time": hours(("8:00", "9:00")) + on(-2, ("10:00", "11:00"))},
     "work_time[1].wday: -2 is not a weekday"),
]


@pytest.mark.parametrize("params, message", ERROR_CASES)
def test_errors(params, message):
    with pytest.raises(WindowError) as caught:
        parse_window(params, SHANGHAI)
    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, ValueError)


def test_params_must_be_a_mapping():
    with pytest.raises(WindowError, match=r"^params: expected an object, got list"):
        parse_window([], SHANGHAI)


def test_tz_must_be_a_tzinfo():
    with pytest.raises(TypeError):
        parse_window({}, "Asia/Shanghai")


def test_now_must_be_aware():
    with pytest.raises(ValueError):
        state(ALWAYS_OPEN, datetime(2020, 1, 20))
    with pytest.raises(ValueError):
        next_change(ALWAYS_OPEN, datetime(2020, 1, 20))


# ---------------------------------------------------------------- timezones

def test_same_instant_different_zones():
    instant = utc("2020-01-20 02:00")  # Shanghai Mon 10:00, Berlin Mon 03:00, NY Sun 21:00
    assert state(parse_window(DAY, SHANGHAI), instant) is OPEN
    assert state(parse_window(DAY, BERLIN), instant) is OFF_HOURS
    monday = {"work_week": [1]}
    assert state(parse_window(monday, SHANGHAI), instant) is OPEN
    assert state(parse_window(monday, NEW_YORK), instant) is OFF_DAY


def test_zone_of_now_does_not_matter():
    window = parse_window(SEED, SHANGHAI)
    instant = utc("2020-01-21 06:30")
    for zone in (UTC, SHANGHAI, BERLIN, NEW_YORK, timezone(timedelta(hours=-3))):
        assert state(window, instant.astimezone(zone)) is OPEN


def test_params_are_read_in_the_given_zone():
    window = parse_window({"start_time": "2020-1-20 12:00"}, SHANGHAI)
    assert window.start == utc("2020-01-20 04:00")
    assert parse_window({"start_time": "2020-1-20 12:00"}, BERLIN).start == utc("2020-01-20 11:00")


ZONES = {
    "zoneinfo": lambda name: ZoneInfo(name),
    "dateutil": lambda name: dateutil_tz.gettz(name),
}

DST_CASES = [
    # Berlin springs forward 2021-03-28 02:00 CET -> 03:00 CEST; 02:30 does
    # not exist, the range opens right after the gap.
    ("Europe/Berlin", {"work_hour": hours(("2:30", "4:00"))}, [
        ("2021-03-28 00:59:59", OFF_HOURS),
        ("2021-03-28 01:00", OPEN),
        ("2021-03-28 01:59:59", OPEN),
        ("2021-03-28 02:00", OFF_HOURS),
        ("2021-03-29 00:29:59", OFF_HOURS),  # a normal day: 02:30 CEST
        ("2021-03-29 00:30", OPEN),
    ]),
    # Berlin falls back 2021-10-31 03:00 CEST -> 02:00 CET; 02:30 happens
    # twice, the first one counts.
    ("Europe/Berlin", {"work_hour": hours(("2:30", "3:00"))}, [
        ("2021-10-31 00:29:59", OFF_HOURS),
        ("2021-10-31 00:30", OPEN),
        ("2021-10-31 01:30", OPEN),
        ("2021-10-31 01:59:59", OPEN),
        ("2021-10-31 02:00", OFF_HOURS),
    ]),
    # A 22:00-06:00 shift across New York's spring-forward night lasts 7 hours.
    ("America/New_York", {"work_hour": hours(("22:00", "6:00"))}, [
        ("2021-03-14 02:59:59", OFF_HOURS),
        ("2021-03-14 03:00", OPEN),
        ("2021-03-14 09:59:59", OPEN),
        ("2021-03-14 10:00", OFF_HOURS),
    ]),
    ("America/New_York", {"stop_time": "2021-11-7 1:30"}, [
        ("2021-11-07 05:29:59", OPEN),
        ("2021-11-07 05:30", FINISHED),
    ]),
    ("America/New_York", {"start_time": "2021-3-14 2:30"}, [
        ("2021-03-14 06:59:59", BEFORE),
        ("2021-03-14 07:00", OPEN),
    ]),
    ("America/New_York", {"holiday": [{"begin": "2021-3-14", "end": "2021-3-15"}]}, [
        ("2021-03-14 04:59:59", OPEN),
        ("2021-03-14 05:00", HOLIDAY),
        ("2021-03-15 03:59:59", HOLIDAY),
        ("2021-03-15 04:00", OPEN),
    ]),
    # A Sunday-only range on Berlin's spring-forward Sunday opens after the gap.
    ("Europe/Berlin", {"work_hour": on(0, ("2:30", "4:00"))}, [
        ("2021-03-27 01:30", OFF_DAY),       # Saturday 02:30 CET
        ("2021-03-28 00:59:59", OFF_HOURS),
        ("2021-03-28 01:00", OPEN),          # 03:00 CEST
        ("2021-03-28 01:59:59", OPEN),
        ("2021-03-28 02:00", OFF_HOURS),
        ("2021-03-29 00:30", OFF_DAY),       # Monday 02:30 CEST
        ("2021-04-04 00:30", OPEN),          # next Sunday 02:30 CEST
    ]),
    # A Saturday-night range across New York's fall-back night lasts 9 hours
    # and still ends on Sunday, which has no range of its own.
    ("America/New_York", {"work_hour": on("6", ("22:00", "6:00"))}, [
        ("2021-11-07 01:59:59", OFF_HOURS),  # Saturday 21:59:59 EDT
        ("2021-11-07 02:00", OPEN),
        ("2021-11-07 10:59:59", OPEN),
        ("2021-11-07 11:00", OFF_DAY),       # Sunday 06:00 EST
        ("2021-11-08 03:00", OFF_DAY),       # Sunday 22:00 EST
    ]),
    ("America/New_York", {"work_week": [0]}, [
        ("2021-11-07 03:59:59", OFF_DAY),
        ("2021-11-07 04:00", OPEN),
        ("2021-11-08 04:59:59", OPEN),  # Sunday lasts 25 hours
        ("2021-11-08 05:00", OFF_DAY),
    ]),
]


@pytest.mark.parametrize("impl", sorted(ZONES))
@pytest.mark.parametrize("zone, params, rows", DST_CASES)
def test_dst(impl, zone, params, rows):
    window = parse_window(params, ZONES[impl](zone))
    for when, expected in rows:
        assert state(window, utc(when)) is expected, when


# ---------------------------------------------------------------- next_change

def brute_force_check(window, start, days, sample_every=37, offsets=(0, 30)):
    """Compare next_change with a minute-by-minute scan.

    Every boundary in the windows used here falls on a whole minute, so the
    first scanned minute whose state differs is the exact change.
    """
    # Aware arithmetic in a DST zone steps wall-clock time; UTC steps instants.
    start = start.astimezone(UTC)
    minutes = days * 24 * 60
    states = [state(window, start + timedelta(minutes=i)) for i in range(minutes + 1)]
    following = [None] * (minutes + 1)
    for i in range(minutes - 1, -1, -1):
        if states[i + 1] is not states[i]:
            following[i] = i + 1
        else:
            following[i] = following[i + 1]
    checked = 0
    for i in range(0, minutes, sample_every):
        for offset in offsets:
            now = start + timedelta(minutes=i, seconds=offset)
            got = next_change(window, now)
            if following[i] is None:
                assert got is None or got > start + timedelta(minutes=minutes), now
            else:
                assert got == start + timedelta(minutes=following[i]), now
                assert got.utcoffset() == timedelta(0)
                checked += 1
    return checked


@pytest.mark.parametrize("params, zone, start, days", [
    (SEED, "Asia/Shanghai", "2020-01-18 00:00", 6),
    (FRIDAY_NIGHT, "Asia/Shanghai", "2020-01-20 00:00", 9),
    (MONDAY_FROM_8, "Asia/Shanghai", "2020-01-18 00:00", 9),
    ({"work_week": [2, 6], "holiday": [{"begin": "2020-1-25 8:00", "end": "2020-1-28 9:30"}]},
     "Asia/Shanghai", "2020-01-20 00:00", 12),
    ({"work_hour": hours(("1:30", "2:45"), ("22:00", "2:15")), "work_week": [0, 1, 5],
      "holiday": [{"begin": "2021-3-29 1:00", "end": "2021-3-29 1:50"}]},
     "Europe/Berlin", "2021-03-24 00:00", 10),
    ({"work_hour": hours(("0:30", "1:30"), ("2:30", "2:30")), "work_week": [0, 3],
      "stop_time": "2021-11-12 12:00"},
     "America/New_York", "2021-11-03 00:00", 10),
    (WEEK_AND_SATURDAY, "Asia/Shanghai", "2020-01-18 00:00", 9),
    (FRIDAY_AND_SATURDAY_NIGHT, "Asia/Shanghai", "2020-01-20 00:00", 9),
    (dict(WEEK_AND_SATURDAY, work_week=[0, 1, 2, 3, 4, 5],
          holiday=[{"begin": "2020-1-22 9:00", "end": "2020-1-22 10:30"}]),
     "Asia/Shanghai", "2020-01-18 00:00", 9),
    ({"work_hour": on(0, ("2:30", "4:00")) + on(6, ("22:00", "3:00")) + on(1, ("1:00", "1:00"))},
     "Europe/Berlin", "2021-03-24 00:00", 10),
    ({"work_hour": on("6", ("22:00", "6:00")) + on("0", ("1:30", "2:30"))},
     "America/New_York", "2021-11-03 00:00", 10),
])
def test_next_change_matches_brute_force(params, zone, start, days):
    window = parse_window(params, ZoneInfo(zone))
    begin = datetime.fromisoformat(start).replace(tzinfo=ZoneInfo(zone))
    assert brute_force_check(window, begin, days) > 0


NEXT_CHANGE_CASES = [
    (START_STOP, "2030-01-01 00:00", None),
    (START_STOP, "2020-01-22 12:00", None),
    ({"start_time": "2020-1-1"}, "2020-01-20 00:00", None),
    ({"start_time": "2020-3-1", "work_hour": hours(("8:00", "9:00"))},
     "2020-01-20 00:00", "2020-03-01 00:00"),
    ({"work_week": [], "stop_time": "2020-5-1"}, "2020-01-20 00:00", "2020-05-01 00:00"),
    ({"work_week": [], "holiday": [{"begin": "2020-2-20", "end": "2020-2-21"}]},
     "2020-01-20 00:00", "2020-02-20 00:00"),
    ({"work_week": []}, "2020-01-20 00:00", None),
    ({"work_week": [1]}, "2020-01-21 09:00", "2020-01-27 00:00"),
    ({"work_week": [1]}, "2020-01-27 00:00", "2020-01-28 00:00"),
    # A long holiday masks the weekly pattern past the look-ahead.
    ({"work_hour": hours(("8:00", "9:00")),
      "holiday": [{"begin": "2020-1-20", "end": "2020-2-20 8:30"}]},
     "2020-01-20 00:00", "2020-02-20 08:30"),
    ({"work_hour": hours(("8:00", "9:00")),
      "holiday": [{"begin": "2020-1-20", "end": "2020-2-20 9:30"}]},
     "2020-01-20 00:00", "2020-02-20 09:30"),
    # Off day -> off hours at the work day's midnight, then open at 8:00.
    ({"work_hour": hours(("8:00", "9:00")), "work_week": [3]}, "2020-01-20 00:00",
     "2020-01-22 00:00"),
    ({"work_hour": hours(("8:00", "9:00")), "work_week": [3]}, "2020-01-22 00:00",
     "2020-01-22 08:00"),
    # Whole-day ranges on every day: the weekly part never flips.
    ({"work_hour": hours(("6:00", "6:00"))}, "2020-01-20 00:00", None),
    ({"work_hour": hours(("6:00", "6:00")), "stop_time": "2020-6-1"}, "2020-01-20 00:00",
     "2020-06-01 00:00"),
    # wday: Friday evening waits for Saturday's own hours, Saturday afternoon
    # for Sunday (no range: off day), Sunday for Monday.
    (WEEK_AND_SATURDAY, "2020-01-24 18:00", "2020-01-25 10:00"),
    (WEEK_AND_SATURDAY, "2020-01-25 10:00", "2020-01-25 14:00"),
    (WEEK_AND_SATURDAY, "2020-01-25 14:00", "2020-01-26 00:00"),
    (WEEK_AND_SATURDAY, "2020-01-26 00:00", "2020-01-27 00:00"),
    (WEEK_AND_SATURDAY, "2020-01-27 00:00", "2020-01-27 08:00"),
    (dict(WEEK_AND_SATURDAY, work_week=[1, 2, 3, 4, 5]), "2020-01-24 18:00",
     "2020-01-25 00:00"),
    (FRIDAY_NIGHT_WDAY, "2020-01-20 12:00", "2020-01-24 00:00"),
    (FRIDAY_NIGHT_WDAY, "2020-01-24 00:00", "2020-01-24 22:00"),
    (FRIDAY_NIGHT_WDAY, "2020-01-25 01:00", "2020-01-25 02:00"),
    (FRIDAY_NIGHT_WDAY, "2020-01-25 02:00", "2020-01-31 00:00"),
    (ONLY_TUESDAY, "2020-01-22 09:00", "2020-01-28 00:00"),
    (TUESDAY_OFF, "2020-01-22 09:00", "2020-01-28 00:00"),
    (TUESDAY_OFF, "2020-01-28 00:00", "2020-01-29 00:00"),
    (TUESDAY_OFF, "2020-01-29 00:00", "2020-02-04 00:00"),
]


@pytest.mark.parametrize("params, when, expected", NEXT_CHANGE_CASES)
def test_next_change(params, when, expected):
    window = parse_window(params, SHANGHAI)
    got = next_change(window, local(when))
    if expected is None:
        assert got is None
    else:
        assert got == local(expected)
        assert got.tzinfo is not None


# ---------------------------------------------------------------- properties

def _hm(minutes, padded):
    h, m = divmod(minutes, 60)
    return f"{h:02d}:{m:02d}" if padded else f"{h}:{m:02d}"


# wday: None = absent, else an operator number (-1 .. 7) written as an int or a str.
wday_strategy = st.one_of(
    st.none(), st.tuples(st.integers(-1, 7), st.booleans()))
range_strategy = st.tuples(
    st.integers(0, 24 * 60 - 1), st.integers(0, 24 * 60), st.booleans(), wday_strategy)
week_strategy = st.one_of(st.none(), st.lists(st.integers(0, 7), max_size=8))


def range_params(ranges):
    params = []
    for begin, end, padded, wday in ranges:
        item = {"begin": _hm(begin, padded), "end": _hm(end, padded)}
        if wday is not None:
            number, as_text = wday
            item["wday"] = str(number) if as_text else number
        params.append(item)
    return params


def reference_state(ranges, week, tz, now):
    """State from a table of the 10080 minutes of a week (fixed-offset zone).

    ``ranges`` are ``(begin, end, wday)`` in minutes; ``wday`` is None or an
    operator weekday number (-1 .. 7).
    """
    wall = now.astimezone(tz)
    workdays = set(range(7)) if week is None else {d % 7 for d in week}
    sunday_based = (wall.weekday() + 1) % 7
    if not ranges:
        return OPEN if sunday_based in workdays else OFF_DAY
    week_minutes = 7 * 1440
    open_minutes, covered_minutes, range_days = set(), set(), set()
    for day in range(7):
        for begin, end, wday in ranges:
            if wday not in (None, -1) and wday % 7 != day:
                continue
            range_days.add(day)
            length = end - begin if end > begin else end + 1440 - begin
            minutes = {(day * 1440 + begin + k) % week_minutes for k in range(length)}
            covered_minutes |= minutes
            if day in workdays:
                open_minutes |= minutes
    index = sunday_based * 1440 + wall.hour * 60 + wall.minute
    if index in open_minutes:
        return OPEN
    if index in covered_minutes or sunday_based not in workdays & range_days:
        return OFF_DAY
    return OFF_HOURS


@settings(max_examples=150, deadline=None, database=None)
@given(
    ranges=st.lists(range_strategy, max_size=3),
    week=week_strategy,
    offset_minutes=st.integers(-12 * 60, 14 * 60),
    now=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2040, 1, 1)),
)
def test_state_agrees_with_weekly_minute_table(ranges, week, offset_minutes, now):
    tz = timezone(timedelta(minutes=offset_minutes))
    params = {"work_hour": range_params(ranges)}
    if week is not None:
        params["work_week"] = week
    window = parse_window(params, tz)
    now = now.replace(tzinfo=UTC)
    expected = reference_state(
        [(b, e, w and w[0]) for b, e, _, w in ranges], week, tz, now)
    assert state(window, now) is expected
    assert is_open(window, now) is (expected is OPEN)


@settings(max_examples=60, deadline=None, database=None)
@given(
    ranges=st.lists(range_strategy, max_size=3),
    week=week_strategy,
    zone=st.sampled_from(["Europe/Berlin", "America/New_York", "Asia/Shanghai"]),
    now=st.datetimes(min_value=datetime(2021, 3, 1), max_value=datetime(2021, 12, 1)),
    probes=st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=8),
)
def test_next_change_is_the_first_change(ranges, week, zone, now, probes):
    params = {"work_hour": range_params(ranges)}
    if week is not None:
        params["work_week"] = week
    window = parse_window(params, ZoneInfo(zone))
    now = now.replace(tzinfo=UTC)
    current = state(window, now)
    change = next_change(window, now)
    if change is None:
        for days in (1, 3, 7, 30):
            assert state(window, now + timedelta(days=days, minutes=7)) is current
        return
    assert change > now
    assert state(window, change) is not current
    assert state(window, change - timedelta(microseconds=1)) is current
    span = (change - now) // timedelta(microseconds=1)
    for fraction in probes:
        # Float products can round up to the change itself; stay strictly before.
        offset = min(int(span * fraction), span - 1)
        assert state(window, now + timedelta(microseconds=offset)) is current


@pytest.mark.parametrize("value", ["0001-1-1 00:00", "9999-12-31 23:59", "1969-12-31"])
def test_far_dates_are_errors_not_overflows(value):
    for zone in ("Asia/Shanghai", "America/Los_Angeles"):
        for key in ("start_time", "stop_time"):
            with pytest.raises(WindowError) as err:
                parse_window({key: value}, ZoneInfo(zone))
            assert "out of range" in str(err.value)
        with pytest.raises(WindowError):
            parse_window({"holiday": [{"begin": value, "end": value}]}, ZoneInfo(zone))
