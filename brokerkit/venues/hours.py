"""Regular trading sessions per exchange: local open and close, lunch break, time zone, and
the exchange_calendars calendar that knows its holidays.

Keyed by the exchange names brokerkit uses in instruments and listings (NASDAQ, NYSE, XETRA,
LSE, TSE...). Holidays, half days and auctions are the calendar's business (look the
`calendar` name up in exchange_calendars); these are the weekday hours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time
from types import MappingProxyType

from ..model import TimeInForce

__all__ = ["HOURS", "QUEUED_WHEN_CLOSED", "Hours"]


@dataclass(frozen=True, slots=True)
class Hours:
    """An exchange's regular session, local time in `tz`.

    `kind` is "regular" (weekdays `open` to `close`), "24/5" (Sunday `open` to Friday
    `close`, with a daily pause from `close` to `open` when `daily_break`) or "24/7".
    `lunch` is a (start, end) pause inside a regular session. `calendar` is the
    exchange_calendars name ("" when it has none)."""

    calendar: str
    tz: str
    open: time
    close: time
    kind: str = "regular"
    lunch: tuple[time, time] | None = None
    daily_break: bool = False


# source: exchange_calendars 4.13 ExchangeCalendarXNYS open_times/close_times (09:30-16:00
# America/New_York); NYSE Rule 7.34 (Core Trading Session 9:30 a.m. to 4:00 p.m. ET)
_US = Hours("XNYS", "America/New_York", time(9, 30), time(16, 0))

#: By exchange name.
HOURS: Mapping[str, Hours] = MappingProxyType({
    "NYSE": _US,
    # source: exchange_calendars 4.13 XNAS (XNYS's session times), 09:30-16:00 New York
    "NASDAQ": Hours("XNAS", "America/New_York", time(9, 30), time(16, 0)),
    # source: NYSE Arca Rule 7.34-E (Core Trading Session 9:30 a.m. to 4:00 p.m. ET)
    "ARCA": _US,
    # source: Cboe equity options regular hours follow the underlying: 9:30 a.m. - 4:00 p.m.
    # ET; exchange_calendars has no Cboe options calendar, XNYS stands in
    "CBOE": _US,
    # source: exchange_calendars XETR 09:00-17:30 Europe/Berlin (Xetra continuous trading)
    "XETRA": Hours("XETR", "Europe/Berlin", time(9, 0), time(17, 30)),
    # source: exchange_calendars XFRA 09:00-17:30 Europe/Berlin
    "FWB": Hours("XFRA", "Europe/Berlin", time(9, 0), time(17, 30)),
    # source: exchange_calendars XPAR 09:00-17:30 Europe/Paris (Euronext Paris)
    "SBF": Hours("XPAR", "Europe/Paris", time(9, 0), time(17, 30)),
    # source: exchange_calendars XAMS 09:00-17:30 Europe/Amsterdam (Euronext Amsterdam)
    "AEB": Hours("XAMS", "Europe/Amsterdam", time(9, 0), time(17, 30)),
    # source: exchange_calendars XLON 08:00-16:30 Europe/London (LSE SETS continuous trading)
    "LSE": Hours("XLON", "Europe/London", time(8, 0), time(16, 30)),
    # source: exchange_calendars XTKS 09:00-15:30 Asia/Tokyo (close 15:00 before 2024-11-05),
    # lunch 11:30-12:30 (JPX trading hours extension of 2024-11-05)
    "TSE": Hours("XTKS", "Asia/Tokyo", time(9, 0), time(15, 30),
                 lunch=(time(11, 30), time(12, 30))),
    # source: exchange_calendars XHKG 09:30-16:00 Asia/Hong_Kong, lunch 12:00-13:00 (HKEX
    # securities market trading hours)
    "SEHK": Hours("XHKG", "Asia/Hong_Kong", time(9, 30), time(16, 0),
                  lunch=(time(12, 0), time(13, 0))),
    # source: exchange_calendars XTSE 09:30-16:00 America/Toronto (TSX regular session)
    "TSX": Hours("XTSE", "America/Toronto", time(9, 30), time(16, 0)),
    # source: exchange_calendars XSWX 09:00-17:30 Europe/Zurich (SIX Swiss Exchange)
    "EBS": Hours("XSWX", "Europe/Zurich", time(9, 0), time(17, 30)),
    # source: exchange_calendars XASX 10:00-16:00 Australia/Sydney
    "ASX": Hours("XASX", "Australia/Sydney", time(10, 0), time(16, 0)),
    # source: CME Globex equity index futures, Sunday-Friday 5:00 p.m. - 4:00 p.m. CT with a
    # daily 4:00-5:00 p.m. halt (cmegroup.com trading hours); exchange_calendars CMES
    "CME": Hours("CMES", "America/Chicago", time(17, 0), time(16, 0), "24/5",
                 daily_break=True),
    # source: the FX market week, Sunday 17:00 to Friday 17:00 New York (the convention
    # IBKR's IDEALPRO follows; interactivebrokers.com, Forex trading hours)
    "IDEALPRO": Hours("", "America/New_York", time(17, 0), time(17, 0), "24/5"),
    # source: crypto exchanges (Alpaca Crypto, Kraken, Coinbase, Binance.US) trade 24/7
    "CRYPTO": Hours("", "UTC", time(0, 0), time(0, 0), "24/7"),
})

#: Times in force a broker keeps while the regular session is closed: DAY and GTC orders are
#: queued for the next session (or work in the extended session when the order allows it),
#: OPG and CLS orders are made for the opening and closing auctions. IOC and FOK orders must
#: execute at once, so they are refused (or canceled) while the market is closed.
# source: Alpaca, https://docs.alpaca.markets/docs/orders-at-alpaca ("Orders submitted outside
# of Regular Trading Hours (9:30am - 4:00pm ET) that are not eligible to be executed during
# extended hours will be queued and eligible for execution at the time of the next market
# open"); IBKR, https://interactivebrokers.github.io/tws-api/classIBApi_1_1Order.html
# (Order.OutsideRth: "If set to true, allows orders to also trigger or fill outside of regular
# trading hours"; without it an order waits for regular trading hours)
QUEUED_WHEN_CLOSED = frozenset({TimeInForce.DAY, TimeInForce.GTC, TimeInForce.OPG,
                                TimeInForce.CLS})
