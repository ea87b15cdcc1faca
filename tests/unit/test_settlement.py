"""Settlement dates against calendar facts (checked in exchange_calendars)."""

from __future__ import annotations

import warnings
from datetime import UTC, date, datetime

import pandas as pd
import pytest
from factories import fill

from brokerkit import frames
from brokerkit.post_trade.settlement import (
    rule_for,
    settle_date_of,
    settlement_dates,
    settlement_status,
    trade_date_of,
    with_settlement,
)


def settle(*rows: dict) -> list[str]:
    df = frames.make(frames.FILLS, rows)
    return [d.strftime("%Y-%m-%d") for d in settlement_dates(df)]


def one(trade: str, instrument: str, asset_class: str = "equity", currency: str = "USD"
        ) -> str:
    return settle(fill(trade, instrument, asset_class, currency))[0]


# Each case: (trade date, instrument, asset class, currency, settle date). The facts and their
# sources are in brokerkit/venues/settlement.py beside the rules; each test names its fact.

@pytest.mark.parametrize(("trade", "instrument", "ac", "expected"), [
    ("2026-11-20", "STK:AAPL", "equity", "2026-11-23"),  # Friday T+1 -> Monday
    ("2026-11-21", "STK:AAPL", "equity", "2026-11-24"),  # dated Saturday: from Monday
    ("2026-11-25", "STK:SPY", "etf", "2026-11-27"),      # Thanksgiving; the half day counts
    ("2026-12-24", "STK:MSFT", "equity", "2026-12-28"),  # Christmas on a Friday
    ("2026-06-18", "STK:MSFT", "equity", "2026-06-22"),  # Juneteenth, a Friday
    ("2026-07-02", "STK:MSFT", "equity", "2026-07-06"),  # July 4 observed on Friday 07-03
    ("2026-04-02", "STK:MSFT", "equity", "2026-04-06"),  # Good Friday: NYSE holiday
    ("2024-05-24", "STK:AAPL", "equity", "2024-05-29"),  # T+2 before the switch, Memorial Day
    ("2024-05-28", "STK:AAPL", "equity", "2024-05-29"),  # the first T+1 trade date
])
def test_us_equities_settle_t_plus_1_on_nyse_and_federal_reserve_days(trade, instrument, ac,
                                                                     expected):
    """SEC Rule 15c6-1 (T+1 from 2024-05-28); NYSE holiday calendar (nyse.com)."""
    assert one(trade, instrument, ac) == expected


@pytest.mark.parametrize(("trade", "expected"), [
    ("2026-10-09", "2026-10-13"),  # Columbus Day 10-12: NYSE open, Fed closed
    ("2026-10-12", "2026-10-13"),  # a trade ON Columbus Day settles the next Fed day
    ("2026-11-10", "2026-11-12"),  # Veterans Day 11-11
    ("2025-11-10", "2025-11-12"),  # Veterans Day 2025-11-11
])
def test_columbus_and_veterans_day_are_trading_days_but_not_settlement_days(trade, expected):
    """Federal Reserve holidays (federalreserve.gov/aboutthefed/k8.htm): DTC settles against
    Fedwire, closed on Columbus Day and Veterans Day while NYSE trades."""
    assert one(trade, "STK:AAPL") == expected


def test_an_unscheduled_exchange_closure_is_not_a_settlement_holiday():
    """NYSE closed on 2025-01-09, the national day of mourning for President Carter, and DTC
    settled that day (NYSE notice of 2024-12-30; SIFMA recommended only an early close)."""
    assert one("2025-01-08", "STK:AAPL") == "2025-01-09"


@pytest.mark.parametrize(("trade", "expected"), [
    ("2017-09-01", "2017-09-07"),  # T+3 over Labor Day ...
    ("2017-09-05", "2017-09-07"),  # ... and the first T+2 trade date: both settle 09-07
    ("1999-12-30", "2000-01-04"),  # T+3 in 1999 (the calendar widens to old dates)
])
def test_us_equities_were_t_plus_3_before_2017_09_05(trade, expected):
    """SEC Release 34-80295: T+2 compliance date 2017-09-05 (trades of Sept 1 and Sept 5
    2017 both settled on Sept 7)."""
    assert one(trade, "STK:AAPL") == expected


@pytest.mark.parametrize(("trade", "instrument", "ac", "expected"), [
    ("2023-06-01", "OPT:AAPL  230616C00180000", "option", "2023-06-02"),
    ("2026-10-09", "OPT:AAPL  261218C00230000", "option", "2026-10-13"),
    ("2023-06-01", "FUND:VFIAX", "fund", "2023-06-02"),
    ("2023-06-01", "BOND:91282CGM7", "bond", "2023-06-02"),   # a Treasury note CUSIP
    ("2023-06-01", "BOND:037833AK6", "bond", "2023-06-05"),   # a corporate bond: T+2 then
])
def test_options_treasuries_and_mutual_funds_were_t_plus_1_before_2024(trade, instrument, ac,
                                                                      expected):
    """Options (OCC) and mutual funds settled T+1 before the 2024 change (SEC Releases
    34-80295, 34-78962); government securities are exempt from Rule 15c6-1 and settle T+1
    regular way; corporate bonds followed the equity cycle (T+2 in 2023)."""
    assert one(trade, instrument, ac) == expected


@pytest.mark.parametrize(("trade", "expected"), [
    ("2026-04-02", "2026-04-03"),  # SIFMA: early close, not a full close, on 2026-04-03
    ("2025-04-17", "2025-04-21"),  # SIFMA full close on Good Friday 2025-04-18
    ("2026-10-09", "2026-10-13"),  # SIFMA closed on Columbus Day
])
def test_treasuries_settle_on_sifma_bond_market_days(trade, expected):
    """SIFMA holiday recommendations (sifma.org/resources/general/holiday-schedule)."""
    assert one(trade, "BOND:912810TM0", "bond") == expected


@pytest.mark.parametrize(("trade", "instrument", "expected"), [
    ("2026-12-23", "STK:SAP@XETRA", "2026-12-28"),  # 24 Dec a settlement day, 25/26 not
    ("2026-12-30", "STK:SAP@XETRA", "2027-01-04"),  # 31 Dec a settlement day, 1 Jan not
    ("2026-04-02", "STK:SAP@XETRA", "2026-04-08"),  # Good Friday and Easter Monday
    ("2026-04-30", "STK:SIE@FWB", "2026-05-05"),    # 1 May
    ("2026-12-23", "STK:MC@SBF", "2026-12-28"),     # Euronext Paris, TARGET2 days
])
def test_xetra_settles_t_plus_2_on_target2_days_including_24_and_31_december(trade, instrument,
                                                                            expected):
    """Deutsche Börse settlement calendar: 24 and 31 December are settlement days although
    Xetra does not trade; TARGET2 closes 1 Jan, Good Friday, Easter Monday, 1 May, 25-26 Dec
    (ECB); CSDR Art. 5(2) T+2."""
    assert one(trade, instrument, currency="EUR") == expected


@pytest.mark.parametrize(("trade", "instrument", "currency", "expected"), [
    ("2026-08-28", "STK:VOD@LSE", "GBP", "2026-09-02"),   # late summer bank holiday 08-31
    ("2022-09-16", "STK:VOD@LSE", "GBP", "2022-09-21"),   # the Queen's state funeral 09-19
    ("2026-12-23", "STK:VOD@LSE", "GBP", "2026-12-29"),   # Boxing Day observed 12-28
    ("2026-12-29", "STK:7203@TSE", "JPY", "2027-01-04"),  # TSE closed 31 Dec to 3 Jan
    ("2026-04-28", "STK:7203@TSE", "JPY", "2026-05-01"),  # Showa Day 04-29
    ("2026-02-13", "STK:5@SEHK", "HKD", "2026-02-20"),    # Lunar New Year 02-17..19
    ("2026-06-30", "STK:RY@TSX", "CAD", "2026-07-02"),    # Canada Day, T+1
    ("2024-05-27", "STK:RY@TSX", "CAD", "2024-05-28"),    # Canada's first T+1 trade date
    ("2024-05-24", "STK:RY@TSX", "CAD", "2024-05-28"),    # Canada's last T+2 trade date
    ("2026-04-02", "STK:BHP@ASX", "AUD", "2026-04-08"),   # Good Friday, Easter Monday
    ("2016-03-04", "STK:BHP@ASX", "AUD", "2016-03-09"),   # ASX T+3 before 2016-03-07 ...
    ("2016-03-07", "STK:BHP@ASX", "AUD", "2016-03-09"),   # ... T+2 from it
    ("2026-05-13", "STK:NESN@EBS", "CHF", "2026-05-18"),  # SIX: Ascension Day 05-14
])
def test_lse_tse_hkex_tsx_asx_and_six_settle_on_their_markets_days(trade, instrument,
                                                                   currency, expected):
    """gov.uk bank holidays (CREST days); JPX, HKEX, TSX, ASX and SIX calendars; CSA NI 24-101
    (Canada T+1 from 2024-05-27); ASX T+2 from 2016-03-07."""
    assert one(trade, instrument, currency=currency) == expected


@pytest.mark.parametrize(("trade", "pair", "expected"), [
    ("2026-11-25", "CASH:EUR.USD", "2026-11-27"),  # Thanksgiving on T+1 does not count
    ("2026-10-09", "CASH:EUR.USD", "2026-10-13"),  # Columbus Day on T+1 does not count
    ("2026-10-08", "CASH:EUR.USD", "2026-10-13"),  # ... but spot on it rolls forward
    ("2026-04-29", "CASH:EUR.USD", "2026-05-04"),  # TARGET2 closed 1 May
    ("2026-08-27", "CASH:GBP.USD", "2026-09-01"),  # England bank holiday 08-31
    ("2026-12-29", "CASH:USD.JPY", "2027-01-04"),  # Japanese bank holidays 31 Dec - 3 Jan
    ("2026-01-22", "CASH:AUD.USD", "2026-01-27"),  # Australia Day 01-26
    ("2026-01-16", "CASH:NZD.USD", "2026-01-21"),  # Wellington Anniversary 01-19
    ("2026-07-30", "CASH:USD.CHF", "2026-08-03"),  # Swiss National Day falls on a Saturday
    ("2026-06-30", "CASH:USD.CAD", "2026-07-02"),  # T+1, Canada Day
    ("2026-10-09", "CASH:USD.CAD", "2026-10-13"),  # T+1, Canadian Thanksgiving 10-12
    ("2026-08-28", "CASH:EUR.GBP", "2026-09-02"),  # cross: the later currency's T+2
    ("2026-11-24", "CASH:EUR.GBP", "2026-11-27"),  # cross: spot on a USD holiday rolls
    ("2026-12-29", "CASH:EUR.JPY", "2027-01-04"),  # cross: JPY's T+2 is the later
])
def test_fx_spot_counts_each_currencys_banking_days_with_the_usd_rule(trade, pair, expected):
    """londonfx.co.uk/valdates.html and ObjectLab Kit's CurrencyDateCalculator: T+2 clear
    days per non-USD currency, a USD holiday on T+1 does not count, the value date must be a
    USD business day too; USD/CAD T+1. Banking calendars: TARGET2 (ECB), gov.uk, Japanese
    Banking Act, Fed holidays."""
    assert one(trade, pair, "fx", pair[-3:]) == expected


def test_crypto_settles_on_the_trade_date_even_on_a_sunday():
    """Crypto exchanges credit a trade at once, every day."""
    assert one("2026-11-22", "CRYPTO:BTC/USD", "crypto") == "2026-11-22"


@pytest.mark.parametrize(("instrument", "ac", "currency"), [
    ("STK:XYZ@NOWHERE", "equity", "USD"),
    ("STK:XYZ", "equity", "BRL"),
    ("OPT:SAP   261218C00100000", "option", "EUR"),
    ("CASH:EUR.XXX", "fx", "XXX"),
    ("WARRANT:XYZ", "warrant", "USD"),
])
def test_an_unmapped_venue_or_asset_class_has_unknown_settlement_not_us_t_plus_1(
        instrument, ac, currency):
    df = frames.make(frames.FILLS, [fill("2026-11-20", instrument, ac, currency)])
    assert settlement_dates(df).isna().all()
    assert settlement_status(df, "2026-12-31").tolist() == ["unknown"]
    assert not rule_for(ac, instrument, currency).known


def test_every_venue_the_ibkr_adapter_maps_has_a_settlement_rule():
    """Each exchange the IBKR adapter can write into a key (its IB and canonical names)."""
    from brokerkit.adapters import ibkr
    from brokerkit.venues.currencies import EXCHANGE_CURRENCIES

    # the stock exchanges it names (CME and CBOE list futures and options, keyed without one)
    stock_exchanges = set(EXCHANGE_CURRENCIES) - {"CME", "CBOE"}
    venues = {*ibkr.IB_EXCHANGE, *ibkr.IB_EXCHANGE.values(), *stock_exchanges,
              *(ibkr.IB_EXCHANGE.get(e, e) for e in stock_exchanges)}
    venues |= {ibkr.CANONICAL_EXCHANGE.get(v, v) for v in venues}
    missing = {v for v in venues if not rule_for("equity", f"STK:X@{v}", "USD").known}
    assert not missing


@pytest.mark.parametrize(("executed_utc", "instrument", "ac", "trade", "settle"), [
    ("2026-11-24T22:30", "CASH:EUR.USD", "fx", "2026-11-25", "2026-11-27"),   # 17:30 New York
    ("2026-11-24T21:30", "CASH:EUR.USD", "fx", "2026-11-24", "2026-11-27"),   # 16:30 New York
    ("2026-11-27T22:30", "CASH:EUR.USD", "fx", "2026-11-30", "2026-12-02"),   # Friday evening
    ("2026-12-03T23:30", "FUT:ESZ6", "future", "2026-12-04", "2026-12-04"),   # 17:30 Chicago
    ("2026-12-03T22:30", "FUT:ESZ6", "future", "2026-12-03", "2026-12-03"),   # 16:30 Chicago
    ("2026-12-06T23:30", "FUT:ESZ6", "future", "2026-12-07", "2026-12-07"),   # Sunday's open
    ("2026-12-04T01:30", "STK:AAPL", "equity", "2026-12-03", "2026-12-04"),   # after hours
    ("2026-12-05T23:30", "CRYPTO:BTC/USD", "crypto", "2026-12-05", "2026-12-05"),
])
def test_trade_dates_roll_at_17_00_new_york_for_fx_and_17_00_chicago_for_cme_futures(
        executed_utc, instrument, ac, trade, settle):
    """londonfx.co.uk: value dates roll at 5 p.m. New York; cmegroup.com: Globex's trade date
    begins at 5 p.m. CT; an equity's after-hours trade keeps its day."""
    at = datetime.fromisoformat(executed_utc).replace(tzinfo=UTC)
    row = {**fill("2026-01-01", instrument, ac), "executed_at": at, "trade_date": None}
    out = with_settlement(frames.make(frames.FILLS, [row]))
    assert str(out.loc[0, "trade_date"])[:10] == trade
    assert str(out.loc[0, "settle_date"])[:10] == settle
    assert trade_date_of(at, ac, instrument) == date.fromisoformat(trade)
    assert settle_date_of(ac, instrument, "USD", date.fromisoformat(trade)) \
        == date.fromisoformat(settle)


def test_the_scalar_and_the_frame_forms_agree_on_every_case_above():
    rows = [fill("2026-12-23", "STK:SAP@XETRA", currency="EUR"),
            fill("2026-11-25", "CASH:EUR.USD", "fx"), fill("2025-01-08", "STK:AAPL"),
            fill("2026-10-09", "BOND:912810TM0", "bond")]
    frame = settle(*rows)
    scalar = [str(settle_date_of(r["asset_class"], r["instrument"], r["currency"],
                                 date.fromisoformat(r["trade_date"]))) for r in rows]
    assert frame == scalar


@pytest.mark.parametrize(("calendar", "day", "is_session"), [
    ("XNYS", "2024-05-27", False),  # Memorial Day
    ("XNYS", "2026-11-26", False),  # Thanksgiving
    ("XNYS", "2026-11-27", True),   # the half day after it
    ("XNYS", "2026-12-25", False),
    ("XLON", "2026-08-31", False),  # summer bank holiday
    ("XFRA", "2026-05-01", False),  # Labour Day (also a TARGET holiday)
    ("XTSE", "2026-07-01", False),  # Canada Day
    ("XNYS", "2026-07-01", True),
])
def test_the_calendar_facts_these_tests_rely_on(calendar, day, is_session):
    xcals = pytest.importorskip("exchange_calendars")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert xcals.get_calendar(calendar).is_session(day) is is_session


def test_old_trade_dates_widen_the_calendar_instead_of_landing_on_its_first_day():
    # T+3 in 1999 (SEC Rule 15c6-1 before 2017-09-05): NYSE opened on 1999-12-31
    assert settle(fill("1999-12-30")) == ["2000-01-04"]


def test_mixed_frame_is_settled_in_one_call_in_row_order():
    got = settle(fill("2026-11-20"), fill("2026-11-22", "CRYPTO:BTC/USD", "crypto"),
                 fill("2024-05-24"), fill("2026-08-28", "STK:VOD@LSE", currency="GBP"))
    assert got == ["2026-11-23", "2026-11-22", "2024-05-29", "2026-09-02"]


def test_status_is_pending_until_the_settle_date():
    df = with_settlement(frames.make(frames.FILLS, [fill("2026-11-20")]))
    assert settlement_status(df, "2026-11-20").tolist() == ["pending"]
    assert settlement_status(df, "2026-11-23").tolist() == ["settled"]
    assert settlement_status(df, pd.Timestamp("2026-11-23T01:00", tz="UTC")).tolist() \
        == ["settled"]


def test_a_fill_without_trade_date_has_unknown_settlement():
    df = frames.make(frames.FILLS, [fill("2026-11-20"), {**fill("2026-11-20"),
                                                         "trade_date": None}])
    assert settlement_status(df, "2026-11-30").tolist() == ["settled", "unknown"]
