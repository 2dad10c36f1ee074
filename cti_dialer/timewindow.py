"""When a task may start new calls.

Operators describe a task's calling window in its params with wall-clock
strings (``start_time``, ``stop_time``, ``work_hour``/``work_time``,
``work_week``, ``holiday``).  :func:`parse_window` validates them once into an
immutable :class:`Window`; :func:`state`, :func:`is_open` and
:func:`next_change` then answer for any timezone-aware instant.

Pure logic: the current time is always passed in.

Instants (start, stop, holidays, and the value returned by
:func:`next_change`) are kept as UTC-aware datetimes.  Aware datetimes that
share a tzinfo are compared by wall clock, ignoring ``fold``, which gets the
repeated hour of a DST fall-back wrong; UTC has no such hour.
"""

from __future__ import annotations

import datetime as _dt
import enum
import re
from dataclasses import dataclass, field
from typing import Any, FrozenSet, Iterator, Mapping, Optional, Tuple

__all__ = [
    "ALWAYS_OPEN",
    "State",
    "Window",
    "WindowError",
    "is_open",
    "next_change",
    "parse_window",
    "state",
]

_UTC = _dt.timezone.utc
_DAY = 86400
_ALL_DAYS: FrozenSet[int] = frozenset(range(7))

# The week is scanned a little past one period so that a range that begins
# on the last day and crosses midnight is still seen.
_LOOKAHEAD_DAYS = 8


class WindowError(ValueError):
    """A task's window params are malformed; the message names the param."""


class State(str, enum.Enum):
    # The values are stored as-is in Redis status records.
    OPEN = "open"
    BEFORE_START = "before_start"
    FINISHED = "finished"
    HOLIDAY = "holiday"
    OFF_DAY = "off_day"
    OFF_HOURS = "off_hours"


@dataclass(frozen=True)
class Window:
    """A parsed calling window.

    ``weekdays`` uses Python's numbering (Monday = 0 ... Sunday = 6); with
    ranges, it holds only days some range begins on.
    ``hours`` holds ``(weekday, begin, end)``: the weekday (Python's
    numbering) the range begins on, and ``begin``/``end`` in seconds after
    that day's local midnight, with ``begin < end <= begin + 86400``.  A
    range without ``wday`` is stored once per weekday, so equivalent params
    compare equal.  An empty tuple means the whole day.  ``start``, ``stop``
    and ``holidays`` are UTC instants.
    """

    # Some tzinfo implementations (dateutil's tzfile) are unhashable; equal
    # windows still hash equally because the remaining fields are compared too.
    tz: _dt.tzinfo = field(hash=False)
    start: Optional[_dt.datetime] = None
    stop: Optional[_dt.datetime] = None
    holidays: Tuple[Tuple[_dt.datetime, _dt.datetime], ...] = ()
    weekdays: FrozenSet[int] = _ALL_DAYS
    hours: Tuple[Tuple[int, int, int], ...] = ()


ALWAYS_OPEN = Window(tz=_UTC)


# --------------------------------------------------------------------------
# Parsing

_TIME_RE = re.compile(r"([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?")
_DATETIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})"
    r"(?: ([0-9]{1,2}):([0-9]{2})(?::([0-9]{2}))?)?"
)
# A bounded digit count keeps int() clear of its huge-string limit.
_WDAY_RE = re.compile(r"-?[0-9]{1,9}")
_TIME_FORMS = "H:MM or H:MM:SS"
_WEEK_RULE = "0-7, 0 and 7 = Sunday"
_WDAY_RULE = _WEEK_RULE + ", -1 = every day"
_DATETIME_FORMS = "YYYY-M-D, YYYY-M-D H:MM or YYYY-M-D H:MM:SS"


def _show(value: Any) -> str:
    # Params are operator input of any size; keep messages to one short line.
    text = repr(value)
    return text if len(text) <= 80 else text[:80] + "..."


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return type(value).__name__


def _clock_seconds(hour: str, minute: str, second: Optional[str]) -> Optional[int]:
    h, m, s = int(hour), int(minute), int(second or 0)
    if h == 24 and m == 0 and s == 0:
        return _DAY
    if h > 23 or m > 59 or s > 59:
        return None
    return h * 3600 + m * 60 + s


def _parse_time_of_day(where: str, value: Any, *, is_end: bool) -> int:
    if not isinstance(value, str):
        raise WindowError(
            f"{where}: expected a string ({_TIME_FORMS}), got "
            f"{_type_name(value)} {_show(value)}")
    match = _TIME_RE.fullmatch(value)
    seconds = _clock_seconds(*match.groups()) if match else None
    if seconds is None:
        raise WindowError(
            f"{where}: {_show(value)} is not a time of day ({_TIME_FORMS})")
    if seconds == _DAY and not is_end:
        raise WindowError(
            f"{where}: {_show(value)} is only allowed as an end "
            f"(it means midnight at the end of the day)")
    return seconds


def _parse_datetime(where: str, value: Any) -> _dt.datetime:
    """Parse to a naive wall-clock datetime."""
    if not isinstance(value, str):
        raise WindowError(
            f"{where}: expected a string ({_DATETIME_FORMS}), got "
            f"{_type_name(value)} {_show(value)}")
    match = _DATETIME_RE.fullmatch(value)
    if match is None:
        raise WindowError(
            f"{where}: {_show(value)} is not a date-time ({_DATETIME_FORMS})")
    year, month, day, hour, minute, second = match.groups()
    try:
        date = _dt.date(int(year), int(month), int(day))
    except ValueError as exc:
        raise WindowError(f"{where}: {_show(value)} is not a valid date ({exc})") from None
    if not 1970 <= date.year <= 9000:
        # Far dates overflow datetime once moved between zones or stepped
        # by days; no dialing campaign needs them.
        raise WindowError(f"{where}: {_show(value)} is out of range (years 1970..9000)")
    seconds = 0
    if hour is not None:
        seconds = _clock_seconds(hour, minute, second)
        if seconds is None:
            raise WindowError(
                f"{where}: {_show(value)} has no valid time of day ({_DATETIME_FORMS})")
    try:
        return _dt.datetime.combine(date, _dt.time()) + _dt.timedelta(seconds=seconds)
    except OverflowError:
        raise WindowError(f"{where}: {_show(value)} is out of range") from None


def _parse_range(where: str, item: Any) -> Tuple[Any, Any]:
    if not isinstance(item, Mapping):
        raise WindowError(
            f'{where}: expected an object with "begin" and "end", got '
            f"{_type_name(item)} {_show(item)}")
    for key in ("begin", "end"):
        if key not in item:
            raise WindowError(f'{where}: missing "{key}"')
    return item["begin"], item["end"]


def _parse_list(name: str, value: Any, what: str) -> list:
    # A str is a Sequence too, and iterating "1,2,3" would silently parse.
    if not isinstance(value, (list, tuple)):
        raise WindowError(
            f"{name}: expected a list of {what}, got {_type_name(value)} {_show(value)}")
    return list(value)


def _is_int(value: Any) -> bool:
    # bool is an int subclass; true/false in JSON is a mistake, not a day.
    return isinstance(value, int) and not isinstance(value, bool)


def _python_weekday(where: str, value: Any, number: int, rule: str) -> int:
    if not 0 <= number <= 7:
        raise WindowError(f"{where}: {_show(value)} is not a weekday ({rule})")
    # Operators count 0 = Sunday, Python counts 0 = Monday.
    return (number - 1) % 7


def _parse_wday(where: str, value: Any) -> FrozenSet[int]:
    """The Python weekdays a work_hour range begins on."""
    # mod_cti's schema allows "3" as well as 3.
    if isinstance(value, str) and _WDAY_RE.fullmatch(value):
        number = int(value)
    elif _is_int(value):
        number = value
    elif isinstance(value, str):
        raise WindowError(f"{where}: {_show(value)} is not a weekday ({_WDAY_RULE})")
    else:
        raise WindowError(
            f"{where}: expected an int or a string ({_WDAY_RULE}), got "
            f"{_type_name(value)} {_show(value)}")
    if number == -1:
        return _ALL_DAYS
    return frozenset({_python_weekday(where, value, number, _WDAY_RULE)})


def _parse_work_hours(name: str, value: Any) -> Tuple[Tuple[int, int, int], ...]:
    ranges = set()
    for i, item in enumerate(_parse_list(name, value, '{"begin", "end"} objects')):
        where = f"{name}[{i}]"
        begin_text, end_text = _parse_range(where, item)
        begin = _parse_time_of_day(f"{where}.begin", begin_text, is_end=False)
        end = _parse_time_of_day(f"{where}.end", end_text, is_end=True)
        if end <= begin:
            # Crosses midnight; begin == end is a whole 24 hours from begin.
            end += _DAY
        days = _ALL_DAYS
        if item.get("wday") is not None:
            days = _parse_wday(f"{where}.wday", item["wday"])
        ranges.update((day, begin, end) for day in days)
    return tuple(sorted(ranges))


def _parse_work_week(value: Any) -> FrozenSet[int]:
    days = set()
    for i, item in enumerate(_parse_list("work_week", value, "weekday numbers 0-7")):
        where = f"work_week[{i}]"
        if not _is_int(item):
            raise WindowError(
                f"{where}: expected an int 0-7 (0 and 7 = Sunday), got "
                f"{_type_name(item)} {_show(item)}")
        days.add(_python_weekday(where, item, item, _WEEK_RULE))
    return frozenset(days)


def _local(instant: _dt.datetime, tz: _dt.tzinfo) -> _dt.datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _to_instant(wall: _dt.datetime, tz: _dt.tzinfo) -> _dt.datetime:
    """The UTC instant of a naive wall-clock time in ``tz``.

    Ambiguous times take their first occurrence; times inside a
    spring-forward gap take the first instant after the gap.
    """
    guess = wall.replace(tzinfo=tz, fold=0).astimezone(_UTC)
    if _local(guess, tz) == wall:
        return guess
    # In a gap.  tzinfo implementations disagree on which offset they apply
    # to such times (dateutil applies the same one to both folds), so the
    # transition is located by bisection rather than read from the offsets.
    lo = hi = guess
    step = _dt.timedelta(hours=1)
    for _ in range(16):
        if _local(lo, tz) < wall:
            break
        lo -= step
        step *= 2
    else:
        return guess
    step = _dt.timedelta(hours=1)
    for _ in range(16):
        if _local(hi, tz) > wall:
            break
        hi += step
        step *= 2
    else:
        return guess
    resolution = _dt.timedelta(microseconds=1)
    while hi - lo > resolution:
        mid = lo + (hi - lo) // 2
        if _local(mid, tz) > wall:
            hi = mid
        else:
            lo = mid
    return hi


def _present(params: Mapping[str, Any], key: str) -> bool:
    # JSON null reads as "not given", like a missing key.
    return params.get(key) is not None


def parse_window(params: Mapping[str, Any], tz: _dt.tzinfo) -> Window:
    """Validate a task's window params; raises :class:`WindowError`."""
    if not isinstance(params, Mapping):
        raise WindowError(
            f"params: expected an object, got {_type_name(params)} {_show(params)}")
    if not isinstance(tz, _dt.tzinfo):
        raise TypeError(f"tz: expected a datetime.tzinfo, got {_type_name(tz)}")

    start = stop = None
    if _present(params, "start_time"):
        start = _to_instant(_parse_datetime("start_time", params["start_time"]), tz)
    if _present(params, "stop_time"):
        stop = _to_instant(_parse_datetime("stop_time", params["stop_time"]), tz)

    holidays = set()
    if _present(params, "holiday"):
        items = _parse_list("holiday", params["holiday"], '{"begin", "end"} objects')
        for i, item in enumerate(items):
            where = f"holiday[{i}]"
            begin_text, end_text = _parse_range(where, item)
            begin = _parse_datetime(f"{where}.begin", begin_text)
            end = _parse_datetime(f"{where}.end", end_text)
            if end < begin:
                raise WindowError(
                    f"{where}: end {_show(end_text)} is before begin {_show(begin_text)}")
            begin_at, end_at = _to_instant(begin, tz), _to_instant(end, tz)
            if begin_at < end_at:
                holidays.add((begin_at, end_at))

    has_hour, has_time = _present(params, "work_hour"), _present(params, "work_time")
    if has_hour and has_time:
        raise WindowError(
            "work_hour and work_time are both given: they are synonyms, "
            "keep only one (ambiguous)")
    hours: Tuple[Tuple[int, int, int], ...] = ()
    if has_hour:
        hours = _parse_work_hours("work_hour", params["work_hour"])
    elif has_time:
        hours = _parse_work_hours("work_time", params["work_time"])

    weekdays = _ALL_DAYS
    if _present(params, "work_week"):
        weekdays = _parse_work_week(params["work_week"])

    if hours:
        # With ranges, a day none of them begins on is not worked, as when
        # work_week leaves it out: a range set for Monday-Saturday closes
        # Sunday.
        weekdays = weekdays & {day for day, _, _ in hours}
        # Midnight to midnight on each day it names is the same as no range.
        # Not when other ranges exist: one crossing midnight may open the
        # day after a work day.
        if all((begin, end) == (0, _DAY) for _, begin, end in hours):
            hours = ()
    if not weekdays:
        hours = ()
    if not hours and weekdays in (_ALL_DAYS, frozenset()):
        # The weekly part no longer depends on the zone; dropping it lets
        # windows that behave the same compare equal (e.g. to ALWAYS_OPEN).
        tz = _UTC

    return Window(
        tz=tz,
        start=start,
        stop=stop,
        holidays=tuple(sorted(holidays)),
        weekdays=weekdays,
        hours=hours,
    )


# --------------------------------------------------------------------------
# Evaluation

def _as_utc(now: _dt.datetime) -> _dt.datetime:
    if not isinstance(now, _dt.datetime):
        raise TypeError(f"now: expected a datetime, got {_type_name(now)}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now: {now!r} is not timezone-aware")
    return now.astimezone(_UTC)


def _midnight(window: Window, day: _dt.date) -> _dt.datetime:
    return _to_instant(_dt.datetime.combine(day, _dt.time()), window.tz)


def _ranges_on(window: Window, day: _dt.date) -> Iterator[Tuple[int, int]]:
    weekday = day.weekday()
    return ((begin, end) for range_day, begin, end in window.hours if range_day == weekday)


def _range_instants(window: Window, day: _dt.date,
                    begin: int, end: int) -> Tuple[_dt.datetime, _dt.datetime]:
    # Offsets are added to the naive midnight, i.e. in wall-clock time, so a
    # 22:00-06:00 shift still ends at 06:00 on a night the clocks change.
    midnight = _dt.datetime.combine(day, _dt.time())
    return (
        _to_instant(midnight + _dt.timedelta(seconds=begin), window.tz),
        _to_instant(midnight + _dt.timedelta(seconds=end), window.tz),
    )


def _weekly_is_constant(window: Window) -> bool:
    return not window.hours and window.weekdays in (_ALL_DAYS, frozenset())


def _weekly_state(window: Window, t: _dt.datetime) -> State:
    workdays = window.weekdays
    if not window.hours:
        if workdays == _ALL_DAYS:
            return State.OPEN
        if not workdays:
            return State.OFF_DAY
        today = _local(t, window.tz).date()
        return State.OPEN if today.weekday() in workdays else State.OFF_DAY

    today = _local(t, window.tz).date()
    covered_on_off_day = False
    # A range lasts at most 24 hours from its begin, so only ranges of today
    # and yesterday can cover t.
    for day in (today - _dt.timedelta(days=1), today):
        for begin, end in _ranges_on(window, day):
            begin_at, end_at = _range_instants(window, day, begin, end)
            if begin_at <= t < end_at:
                # The day a range begins decides, even past midnight.
                if day.weekday() in workdays:
                    return State.OPEN
                covered_on_off_day = True
    if covered_on_off_day or today.weekday() not in workdays:
        return State.OFF_DAY
    return State.OFF_HOURS


def _state_utc(window: Window, t: _dt.datetime) -> State:
    if window.stop is not None and t >= window.stop:
        return State.FINISHED
    if window.start is not None and t < window.start:
        return State.BEFORE_START
    for begin, end in window.holidays:
        if begin <= t < end:
            return State.HOLIDAY
    return _weekly_state(window, t)


def state(window: Window, now: _dt.datetime) -> State:
    """The window's state at ``now`` (a timezone-aware datetime)."""
    return _state_utc(window, _as_utc(now))


def is_open(window: Window, now: _dt.datetime) -> bool:
    return state(window, now) is State.OPEN


def next_change(window: Window, now: _dt.datetime) -> Optional[_dt.datetime]:
    """The earliest instant after ``now`` at which the state differs, in UTC.

    ``None`` when the state never changes again.
    """
    t = _as_utc(now)
    current = _state_utc(window, t)
    if current is State.FINISHED:
        return None

    candidates = set()
    for instant in (window.start, window.stop):
        if instant is not None and instant > t:
            candidates.add(instant)
    for begin, end in window.holidays:
        if begin > t:
            candidates.add(begin)
        if end > t:
            candidates.add(end)

    if not _weekly_is_constant(window):
        # Every instant where the weekly part can flip, over a bit more than
        # a week.  If the state holds that long without interference from
        # the fixed instants above, the weekly part is constant for good (it
        # repeats every 7 days); if it is masked (holiday, before start) for
        # that long, it can only show through at one of the fixed instants.
        today = _local(t, window.tz).date()
        for offset in range(-1, _LOOKAHEAD_DAYS + 1):
            day = today + _dt.timedelta(days=offset)
            candidates.add(_midnight(window, day + _dt.timedelta(days=1)))
            for begin, end in _ranges_on(window, day):
                candidates.update(_range_instants(window, day, begin, end))
        candidates = {c for c in candidates if c > t}

    # Between two consecutive candidates nothing the state depends on moves,
    # so the first candidate with a different state is the change itself.
    for candidate in sorted(candidates):
        if _state_utc(window, candidate) is not current:
            return candidate
    return None
