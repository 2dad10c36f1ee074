"""Calling hours in the callee's own time: which zones a number may be in, and when it may be called.

Pure: the zones come from the number (Google's libphonenumber data, as the
``phonenumbers`` package ships it), the windows from the task's own
``work_hour`` / ``work_week`` / ``holiday`` params read in each zone. A
number whose zone is ambiguous (a country or a non-geographic range spanning
several zones) may be called only when its calling hours are open in every
zone it may be in: the most restrictive reading, since calling someone at
night is worse than calling them an hour later.
"""
import dataclasses
import datetime as _dt
import functools
import zoneinfo
from typing import Any, Mapping, Optional, Tuple

import phonenumbers
from phonenumbers import timezone as phone_timezone

from . import timewindow

# The task params that describe calling hours; start_time and stop_time stay
# the campaign's bounds in the dialer's own zone.
HOURS_PARAMS = ("work_hour", "work_time", "work_week", "holiday")
_UNKNOWN_ZONE = "Etc/Unknown"
# How many window changes next_open follows before it gives up: each step
# moves to the next opening of one zone, so a few per zone suffice.
_MAX_STEPS = 400


class CalleeTimeError(ValueError):
    """The callee_time param is malformed; the message says why."""


@dataclasses.dataclass(frozen=True)
class CalleeHours:
    """A task's calling hours, to be read in each callee's zone."""
    region: str                     # ISO country for numbers written without +/00 ("" = none)
    hours: Tuple[Tuple[str, Any], ...]  # the HOURS_PARAMS the task gives, as written

    def zones(self, number: str) -> Tuple[str, ...]:
        return zones_for(number, self.region)

    def window(self, zone: str) -> timewindow.Window:
        return _window(self.hours, zone)

    def is_open(self, zones: Tuple[str, ...], now: float) -> bool:
        return all(timewindow.is_open(self.window(z), _at(now)) for z in zones)

    def next_open(self, zones: Tuple[str, ...], now: float) -> Optional[float]:
        """The first time at or after ``now`` when the hours are open in every zone; None if never."""
        t = _at(now)
        for _ in range(_MAX_STEPS):
            closed = [z for z in zones if not timewindow.is_open(self.window(z), t)]
            if not closed:
                return t.timestamp()
            later = []
            for z in closed:
                change = timewindow.next_change(self.window(z), t)
                if change is None:
                    return None         # closed for good in one zone
                later.append(change)
            t = max(later)
        return None


def parse(value, params: Mapping[str, Any]) -> Optional[CalleeHours]:
    """The task's ``callee_time`` param: ``true``, or ``{"region": "US"}``; None/false = the dialer's zone."""
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, Mapping):
        raise CalleeTimeError('callee_time must be true or {"region": "US"}, not %r' % (value,))
    unknown = sorted(set(value) - {"region"})
    if unknown:
        raise CalleeTimeError("callee_time: unknown fields %s (known: region)" % ", ".join(unknown))
    region = value.get("region", "") or ""
    if region and (not isinstance(region, str) or region.upper() not in phonenumbers.SUPPORTED_REGIONS):
        raise CalleeTimeError("callee_time.region must be an ISO country code such as \"US\", not %r" % (region,))
    hours = CalleeHours(region=region.upper(),
                        hours=tuple((k, freeze(params[k])) for k in HOURS_PARAMS if k in params))
    try:
        hours.window("UTC")         # the same checks as the task's own window, once, now
    except timewindow.WindowError as exc:
        raise CalleeTimeError(str(exc)) from None
    return hours


@functools.lru_cache(maxsize=4096)
def zones_for(number: str, region: str = "") -> Tuple[str, ...]:
    """The IANA zones ``number`` may be in; () when unknown (not a number the library can place)."""
    text = number.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    try:
        parsed = phonenumbers.parse(text, region or None)
    except phonenumbers.NumberParseException:
        return ()
    zones = tuple(z for z in phone_timezone.time_zones_for_number(parsed) if z != _UNKNOWN_ZONE)
    return tuple(z for z in zones if _known_zone(z))


@functools.lru_cache(maxsize=None)
def _known_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
        return True
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False


@functools.lru_cache(maxsize=1024)
def _window(hours: Tuple[Tuple[str, Any], ...], zone: str) -> timewindow.Window:
    return timewindow.parse_window(dict(_thaw(hours)), zoneinfo.ZoneInfo(zone))


def _thaw(hours):
    # The params were frozen as written (lists and dicts inside a tuple of
    # pairs); lru_cache needs them hashable, so they are frozen as repr-able
    # tuples by freeze() and turned back here.
    return [(k, _unfreeze(v)) for k, v in hours]


def freeze(value):
    """A JSON value as nested tuples (hashable), for CalleeHours.hours."""
    if isinstance(value, dict):
        return ("__dict__",) + tuple((k, freeze(v)) for k, v in sorted(value.items()))
    if isinstance(value, list):
        return ("__list__",) + tuple(freeze(v) for v in value)
    return value


def _unfreeze(value):
    if isinstance(value, tuple) and value and value[0] == "__dict__":
        return {k: _unfreeze(v) for k, v in value[1:]}
    if isinstance(value, tuple) and value and value[0] == "__list__":
        return [_unfreeze(v) for v in value[1:]]
    return value


def _at(ts: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)
