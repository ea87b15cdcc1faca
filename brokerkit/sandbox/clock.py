"""The sandbox clock: the market's now, each exchange's sessions, and trade dates.

- `Clock`: real time plus an offset (the default), or a frozen manual time for tests.
- `Session`: an exchange's regular hours (`EXCHANGES`), as data.
- `Sessions`: one exchange's sessions over a bounded range of dates, as arrays of session
  dates and their UTC open, close and lunch break. From exchange_calendars when the exchange
  has a calendar (`brokerkit.venues.hours`; holidays and early closes included), else from
  its regular hours (weekdays; a 24/5 session opens the evening before its date; 24/7 is UTC
  days). `sessions(exchange, at)` builds them on first use, cached, for about two years either
  side of `at`, and widens the range when asked about a time outside it.
- Clock modes: `"always-open"` (the default: every exchange trades at any hour, for demos and
  tests) and `"exchange"` (trading only in real sessions). In both, the trade date of an
  instant is the session it belongs to: during a session that session, outside one (night,
  weekend, holiday, a futures or FX market after its 17:00 roll) the next session, never a
  weekend or holiday date.

Without exchange_calendars installed (`pip install 'brokerkit[calendars]'`) the always-open
clock skips weekends only, and the exchange clock cannot be chosen.
"""

from __future__ import annotations

import importlib.util
import math
import threading
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Literal, get_args
from zoneinfo import ZoneInfo

import numpy as np

from ..venues.hours import HOURS

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CLOCK_MODES", "EXCHANGES", "Clock", "ClockMode", "Session", "Sessions",
           "check_clock_mode", "sessions"]

ClockMode = Literal["always-open", "exchange"]
CLOCK_MODES: tuple[str, ...] = get_args(ClockMode)
_NAT = np.iinfo(np.int64).min  # numpy's NaT as int64
_SPAN = timedelta(days=730)  # sessions are built for this long either side of the time asked


class Clock:
    """The market's now: real time plus an offset by default, or a frozen manual time.

    `advance(seconds)` moves either kind forward; `set_time(at)` jumps (a real clock keeps
    running from there); `freeze(at)` turns it into a manual clock, for tests.
    """

    def __init__(self, at: datetime | None = None) -> None:
        self._frozen: datetime | None = _utc(at) if at is not None else None
        self._offset = timedelta(0)

    def __repr__(self) -> str:
        return f"<Clock {'manual' if self.manual else 'real'} {self.now().isoformat()}>"

    @property
    def manual(self) -> bool:
        return self._frozen is not None

    def now(self) -> datetime:
        """The current market time (UTC)."""
        base = self._frozen if self._frozen is not None else datetime.now(UTC)
        return base + self._offset

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward by `seconds`; returns the new now."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"clock can only advance by a finite number of seconds >= 0, "
                             f"got {seconds!r}")
        self._offset += timedelta(seconds=seconds)
        return self.now()

    def set_time(self, at: datetime) -> None:
        """Make now equal to `at` (a manual clock stays frozen there)."""
        at = _utc(at)
        if self._frozen is not None:
            self._frozen, self._offset = at, timedelta(0)
        else:
            self._offset = at - datetime.now(UTC)

    def freeze(self, at: datetime | None = None) -> None:
        """Stop the clock at `at` (default: now); it then moves only by `advance`."""
        self._frozen, self._offset = _utc(at) if at is not None else self.now(), timedelta(0)


def _utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError(f"time {at!r} must be timezone-aware")
    return at.astimezone(UTC)


def check_clock_mode(mode: object) -> ClockMode:
    """`mode` when it is one of `CLOCK_MODES`; else a ValueError naming `clock_mode`."""
    if mode not in CLOCK_MODES:
        raise ValueError(f"clock_mode must be one of {', '.join(map(repr, CLOCK_MODES))}, "
                         f"got {mode!r}")
    if mode == "exchange" and not _have_calendars():
        raise ValueError("clock_mode 'exchange' needs exchange_calendars for real sessions: "
                         "pip install 'brokerkit[calendars]'")
    return mode  # type: ignore[return-value]


def _have_calendars() -> bool:
    return importlib.util.find_spec("exchange_calendars") is not None


# --------------------------------------------------------------------------------------------
# Regular hours


@dataclass(frozen=True, slots=True)
class Session:
    """An exchange's regular hours: local open and close on trading weekdays, in `tz`.

    `kind` is "regular", "24/5" (each weekday's session opens at `open` the evening before
    and closes at `close`, local time; Monday's opens on Sunday evening), or "24/7" (UTC
    days). `Sessions` adds the holidays and early closes of the exchange's calendar.
    """

    tz: str
    open: time = time(9, 30)
    close: time = time(16, 0)
    kind: str = "regular"
    daily_break: bool = False

    def is_open(self, at: datetime) -> bool:
        """True when `at` falls in regular hours (holidays not considered; see `Sessions`)."""
        if self.kind == "24/7":
            return True
        local = at.astimezone(ZoneInfo(self.tz))
        wd, t = local.weekday(), local.time()
        if self.kind == "24/5":
            if wd == 5 or (wd == 4 and t >= self.close) or (wd == 6 and t < self.open):
                return False
            return not (self.daily_break and self.close <= t < self.open)
        return wd < 5 and self.open <= t < self.close


#: Each exchange's regular hours, from the venue facts (`brokerkit.venues.hours`).
EXCHANGES: dict[str, Session] = {
    name: Session(h.tz, h.open, h.close, h.kind, h.daily_break) for name, h in HOURS.items()}


# --------------------------------------------------------------------------------------------
# Sessions


@dataclass(frozen=True, slots=True, eq=False)
class Sessions:
    """One exchange's sessions from `first` to `last`: session dates and their UTC bounds
    (int64 nanoseconds; `break_starts`/`break_ends` are NaT where a session has no break)."""

    exchange: str
    source: str  # the exchange_calendars name, or "regular hours"
    first: date
    last: date
    days: np.ndarray  # datetime64[D]
    opens: np.ndarray
    closes: np.ndarray
    break_starts: np.ndarray
    break_ends: np.ndarray

    def __repr__(self) -> str:
        return f"<Sessions {self.exchange} ({self.source}) {self.first}..{self.last}>"

    def covers(self, at: datetime) -> bool:
        """True when `at` lies inside the range these sessions were built for (with room for
        the next session)."""
        ns = _ns(at)
        return len(self.days) > 0 and self.opens[0] <= ns and \
            at.date() + timedelta(days=14) <= self.last

    def _locate(self, at: datetime) -> int:
        """Index of the session `at` belongs to: the first one closing after it."""
        i = int(np.searchsorted(self.closes, _ns(at), side="right"))
        if i >= len(self.days):
            raise ValueError(f"{at.isoformat()} is after the last {self.exchange} session "
                             f"built ({self.last})")
        return i

    def is_open(self, at: datetime) -> bool:
        """True when `at` is inside a session and outside its break."""
        i, ns = self._locate(at), _ns(at)
        in_break = self.break_starts[i] != _NAT and self.break_starts[i] <= ns \
            < self.break_ends[i]
        return bool(self.opens[i] <= ns and not in_break)

    def trade_date(self, at: datetime) -> date:
        """The session `at` belongs to: during a session (or its break) that session, else
        the next one."""
        return _day(self.days[self._locate(at)])

    def after(self, day: date, n: int) -> date:
        """The `n`th session after `day` (`day` itself for 0 when it is a session; a day
        that is not a session counts from the next one)."""
        i = int(np.searchsorted(self.days, np.datetime64(day, "D"), side="left")) + n
        if i >= len(self.days):
            raise ValueError(f"{day} + {n} sessions is after the last {self.exchange} session "
                             f"built ({self.last})")
        return _day(self.days[i])


def _ns(at: datetime) -> int:
    at = _utc(at)
    return (at - _EPOCH) // timedelta(microseconds=1) * 1000


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _day(d: np.datetime64) -> date:
    return date.fromisoformat(str(d))


_CACHE: dict[str, Sessions] = {}
_LOCK = threading.Lock()


def sessions(exchange: str, at: datetime) -> Sessions:
    """The sessions of `exchange` (a key of `EXCHANGES`) covering `at`: built on first use
    for `at` +- two years, cached, and rebuilt wider when `at` falls outside."""
    cached = _CACHE.get(exchange)
    if cached is not None and cached.covers(at):
        return cached
    with _LOCK:
        cached = _CACHE.get(exchange)
        if cached is not None and cached.covers(at):
            return cached
        first, last = at.date() - _SPAN, at.date() + _SPAN
        if cached is not None:
            first, last = min(first, cached.first), max(last, cached.last)
        built = _build(exchange, first, last)
        _CACHE[exchange] = built
        return built


def _build(exchange: str, first: date, last: date) -> Sessions:
    import pandas as pd

    session = EXCHANGES[exchange]
    name = HOURS[exchange].calendar
    if name and _have_calendars():
        days, opens, closes, b_start, b_end = _from_calendar(name, first, last)
        # a calendar's close is capped by the regular close: CMES closes its sessions at
        # 17:00 CT, CME Globex halts at 16:00 CT (see EXCHANGES["CME"])
        closes = np.minimum(closes, _local(days, 0, session.close, session.tz))
        source = name
    else:
        kind = session.kind
        all_days = pd.date_range(first, last, freq="D")
        day_index = all_days if kind == "24/7" else all_days[all_days.day_of_week < 5]
        days = day_index.to_numpy().astype("datetime64[D]")
        if kind == "24/7":
            opens = _local(days, 0, time(0), session.tz)
            closes = _local(days, 1, time(0), session.tz)
        else:
            opens = _local(days, -1 if kind == "24/5" else 0, session.open, session.tz)
            closes = _local(days, 0, session.close, session.tz)
        b_start = b_end = np.full(len(days), _NAT, dtype=np.int64)
        source = "regular hours"
    return Sessions(exchange, source, first, last, days, opens, closes, b_start, b_end)


def _from_calendar(name: str, first: date, last: date
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    import exchange_calendars as xcals

    try:
        with warnings.catch_warnings():  # exchange_calendars 4.13 on pandas 3 warns inside
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            cal = xcals.get_calendar(name, start=first.isoformat(), end=last.isoformat())
    except Exception as e:  # its errors name the bounds it supports
        raise ValueError(f"calendar {name!r} cannot cover {first} to {last}: {e}") from None
    s = cal.schedule
    days = s.index.to_numpy().astype("datetime64[D]")
    return (days, *(_asi8(s[c]) for c in ("open", "close", "break_start", "break_end")))


def _asi8(column: pd.Series) -> np.ndarray:
    import pandas as pd

    return pd.DatetimeIndex(column).as_unit("ns").asi8.copy()


def _local(days: np.ndarray, shift: int, t: time, tz: str) -> np.ndarray:
    """UTC nanoseconds of local time `t` in `tz` on each of `days` moved by `shift` days."""
    import pandas as pd

    local = pd.DatetimeIndex(days + np.timedelta64(shift, "D")).as_unit("ns") + \
        pd.Timedelta(hours=t.hour, minutes=t.minute)
    return local.tz_localize(tz, ambiguous=True, nonexistent="shift_forward") \
        .tz_convert("UTC").asi8.copy()
