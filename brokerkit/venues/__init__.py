"""Facts about each venue, as data with their sources: what a broker or exchange publishes.

One module per venue family, each plain frozen dataclasses, frozensets and read-only
mappings (no I/O, no SDKs), every fact with a `# source:` comment beside it:

==================  ========================================================================
`alpaca`            order types and times in force per asset class, fractional, notional and
                    extended-hours rules, the $1 notional minimum, client order id length,
                    the Trading API's 200 requests/min
`ibkr`              the TWS API's order types and times in force (with IB's codes), whole
                    quantities only, no notional amounts, 50 messages/s
`crypto`            ccxt exchanges' request budgets: `rateLimit` and per-call costs
                    (Kraken, Coinbase Advanced Trade, Binance.US)
`tradestation`      TradeStation API v3's request limit
`settlement`        settlement cycles per market with their history and the calendars they
                    count on: US equities on NYSE and Federal Reserve days, options,
                    Treasuries and mutual funds, SIFMA bond days, TARGET2 for Xetra, each
                    currency's banking days for FX spot (the USD rule); where trade dates
                    roll (FX 17:00 New York, CME 17:00 Chicago); UNKNOWN for the rest
`margin`            Reg T initial margin, FINRA 4210 maintenance (25% long, 30% short),
                    uncovered short options, the stand-in for a future's initial margin
`symbols`           share-class spellings (BRK.B, BRK B, BRK/B, BRK-B) as one key
`currencies`        the ISO 4217 currency codes
`hours`             regular sessions per exchange (local open, close, lunch break) with the
                    exchange_calendars name
`base`              the shapes shared by the modules (`RateLimit`)
==================  ========================================================================

Readers: `execution.ratelimit` (presets), `execution.risk`, `post_trade.settlement` (rules),
the adapters' pre-trade checks, and the sandbox servers, which enforce the same facts with
their own code, so a test of an adapter against the sandbox can fail. This package imports
only `brokerkit.model`; import a module by name (`from brokerkit.venues import alpaca`).
"""

from __future__ import annotations

__all__ = ["alpaca", "base", "crypto", "currencies", "hours", "ibkr", "margin", "settlement",
           "symbols", "tradestation"]
