"""Calling hours: when a contact may be dialled, in the contact's own time zone.

Windows are local wall-clock times ("09:00"-"20:00" on weekdays), so they follow DST by
construction: a local time is turned into an instant with zoneinfo on the day in question, and
whether a moment is inside a window is judged on its local wall-clock reading.  DST edges: a
window edge inside the spring-forward gap (02:30 does not exist) is the gap's end (03:00, the
first moment the clock reads later than 02:30); an ambiguous edge in the fall-back hour is its
first occurrence, and the repeated hour is inside or outside just as its wall-clock reading says.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_LOOKAHEAD_DAYS = 8  # a weekly window always opens within a week and a day


@dataclass(frozen=True, slots=True)
class Window:
    """One daily window on some weekdays (0 = Monday); `end` is exclusive and after `start`."""

    days: frozenset[int]
    start: dt.time
    end: dt.time

    def contains(self, local: dt.datetime) -> bool:
        return local.weekday() in self.days and self.start <= local.time().replace(tzinfo=None) < self.end

    def next_open(self, now: float, zone: ZoneInfo) -> float | None:
        """The first instant at or after `now` (unix seconds) inside this window, None if never."""
        today = dt.datetime.fromtimestamp(now, zone).date()
        for offset in range(_LOOKAHEAD_DAYS):
            day = today + dt.timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            opens, closes = _instant(day, self.start, zone), _instant(day, self.end, zone)
            if now < closes and opens < closes:
                return max(now, opens)
        return None


@dataclass(frozen=True, slots=True)
class CallingHours:
    """Zero or more windows; none means any time (the campaign's default unless configured)."""

    windows: tuple[Window, ...] = ()

    @property
    def always(self) -> bool:
        return not self.windows

    def allows(self, now: float, zone: ZoneInfo) -> bool:
        if self.always:
            return True
        local = dt.datetime.fromtimestamp(now, zone)
        return any(w.contains(local) for w in self.windows)

    def next_open(self, now: float, zone: ZoneInfo) -> float | None:
        """`now` if calls are allowed now, else when the next window opens (None: no window ever opens)."""
        if self.allows(now, zone):
            return now
        opens = [t for t in (w.next_open(now, zone) for w in self.windows) if t is not None]
        return min(opens) if opens else None


def _instant(day: dt.date, at: dt.time, zone: ZoneInfo) -> float:
    """Unix seconds of local `day` `at` in `zone`; a time in the spring-forward gap is the gap's end."""
    wanted = dt.datetime.combine(day, at)
    instant = wanted.replace(tzinfo=zone).timestamp()  # fold=0: an ambiguous time's first occurrence
    if dt.datetime.fromtimestamp(instant, zone).replace(tzinfo=None) == wanted:
        return instant
    instant = wanted.replace(tzinfo=zone, fold=1).timestamp()  # before the gap: walk to its end
    while dt.datetime.fromtimestamp(instant, zone).replace(tzinfo=None) < wanted:
        instant += 60.0
    return instant
