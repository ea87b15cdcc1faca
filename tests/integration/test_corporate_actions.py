"""Corporate actions and broker fills in reconciliation runs, end to end: a split applied at
the sandbox (over its control API), read back by the paper adapter over a real socket, explains
its difference and keeps the cost basis; fills the broker reports that the book does not hold
are named; what the book already holds is never counted twice; a restart keeps the actions."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from brokerkit.adapters.paper import PaperAdapter
from brokerkit.book import Book
from brokerkit.config import ConnectionConfig, Settings
from brokerkit.post_trade.runs import Reconciler
from brokerkit.service import BrokerageService

ACCOUNTS = ("DEMO-MARGIN-1", "DEMO-CASH-1")


def reconciler(book_url: str, paper_url: str, broker: str, *, read_only: bool = False
               ) -> Reconciler:
    """A reconciler over one paper connection, `paper-us`, at `paper_url`'s broker `broker`."""
    conn = ConnectionConfig("paper-us", "paper", options={"url": paper_url, "broker": broker},
                            accounts=ACCOUNTS, read_only=read_only)
    svc = BrokerageService(Settings(connections={"paper-us": conn}, book_url=book_url))
    return Reconciler(svc, Book(book_url))


def control(sandbox: Any, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST `body` to the sandbox's control server; its status and JSON answer."""
    req = urllib.request.Request(sandbox.servers["control"]["url"] + path,
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def row_of(run: Any, instrument: str, account: str = "DEMO-MARGIN-1") -> Any:
    rows = run.rows[(run.rows["instrument"] == instrument) & (run.rows["account"] == account)]
    assert len(rows) == 1, run.rows
    return rows.iloc[0]


@pytest.fixture
def broker() -> str:
    return f"ca-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def rec(book_url, paper_url, broker):
    r = reconciler(book_url, paper_url, broker)
    r.adopt("paper-us", reason="open the book")
    yield r
    r.brokerage.close()


def test_apples_4_for_1_split_at_the_broker_is_explained_and_sync_keeps_the_cost_basis(
        rec, fresh_sandbox, broker):
    """Apple's 4-for-1 split: shareholders of record on 2020-08-24 got three more shares for
    each share held, trading split-adjusted from 2020-08-31 (Apple press release "Apple
    reports third quarter results", 2020-07-30). The demo account's 120 AAPL at 190.25 are
    480 at 47.5625 afterwards: the same cost basis, 22,830."""
    status, answer = control(fresh_sandbox, "/v1/corporate_actions",
                             {"broker": broker, "symbol": "AAPL", "ratio": 4})
    assert status == 200, answer
    action_id = answer["action"]["action_id"]
    assert answer["action"]["accounts"] == ["DEMO-MARGIN-1"]

    run = rec.run()
    aapl = row_of(run, "STK:AAPL")
    assert (aapl["book_quantity"], aapl["broker_quantity"]) == (120, 480)
    assert aapl["status"] == "EXPLAINED"
    assert aapl["explanation"] == (f"corporate action {action_id} (split x4) reported by the "
                                   f"broker, not yet in the book; cost basis kept")
    assert run.unexplained == 0, run.breaks

    assert rec.sync(run.run_id, [list(run.rows.index).index(aapl.name)],
                    reason="AAPL 4-for-1 split") == 1
    held = rec.book.book_positions_frame("paper-us").set_index("instrument").loc["STK:AAPL"]
    assert held["quantity"] == 480
    assert held["avg_cost"] == pytest.approx(190.25 / 4)
    assert held["quantity"] * held["avg_cost"] == pytest.approx(120 * 190.25)
    after = rec.run()
    assert row_of(after, "STK:AAPL")["status"] == "MATCH" and after.unexplained == 0


def test_citigroups_1_for_10_reverse_split_is_explained_by_the_split(rec, fresh_sandbox,
                                                                     broker):
    """Citigroup's 1-for-10 reverse split, effective after the close of 2011-05-06 (Citigroup
    press release, 2011-03-21): 80 NVDA in the demo account stand in for the shares, 8 after."""
    status, answer = control(fresh_sandbox, "/v1/corporate_actions",
                             {"broker": broker, "symbol": "NVDA", "ratio": 0.1,
                              "action_id": "C-RS-2011"})
    assert status == 200, answer
    nvda = row_of(rec.run(), "STK:NVDA")
    assert (nvda["book_quantity"], nvda["broker_quantity"], nvda["status"]) == (80, 8,
                                                                                "EXPLAINED")
    assert nvda["explanation"].startswith("corporate action C-RS-2011 (reverse_split x0.1)")


def test_a_split_that_does_not_close_the_difference_leaves_a_break_naming_it(rec,
                                                                             fresh_sandbox,
                                                                             broker):
    paper = fresh_sandbox.broker(broker)
    paper.apply_split("AAPL", 2, action_id="CA-2")
    paper.set_position("DEMO-MARGIN-1", "AAPL", "241", "95.125")  # 240 split, and one more
    aapl = row_of(rec.run(), "STK:AAPL")
    assert aapl["status"] == "QUANTITY_BREAK"
    assert aapl["explanation"].startswith("not closed by corporate action CA-2 (split x2)")


def test_the_control_api_refuses_a_bad_split_naming_the_field(rec, fresh_sandbox, broker):
    for body, words in (({"broker": broker, "symbol": "AAPL", "ratio": 1}, "ratio"),
                        ({"broker": broker, "symbol": "AAPL", "ratio": "four"}, "ratio"),
                        ({"broker": broker, "symbol": "BTC/USD", "ratio": 2}, "crypto"),
                        ({"broker": broker, "symbol": "AAPL", "ratio": 2, "when": 1}, "when")):
        status, answer = control(fresh_sandbox, "/v1/corporate_actions", body)
        assert status == 400 and words in answer["error"], (body, answer)
    status, answer = control(fresh_sandbox, "/v1/corporate_actions",
                             {"broker": broker, "symbol": "NOPE", "ratio": 2})
    assert status == 404 and "NOPE" in answer["error"]
    assert fresh_sandbox.broker(broker).corporate_actions() == []  # nothing applied


def test_a_fill_at_the_broker_not_yet_in_the_book_is_explained_with_the_fill(
        book_url, paper_url, fresh_sandbox, broker):
    """A read-only connection pulls nothing into the book: a fill made at the broker since the
    book was opened from it is a difference the fill explains, named with its order."""
    rec = reconciler(book_url, paper_url, broker, read_only=True)
    try:
        rec.adopt("paper-us", reason="open the book")
        order = fresh_sandbox.broker(broker).submit("DEMO-MARGIN-1", "MSFT", "buy",
                                                    quantity="5", client_order_id="elsewhere")
        assert order.status.value == "FILLED"
        msft = row_of(rec.run(), "STK:MSFT")
        assert (msft["book_quantity"], msft["broker_quantity"]) == (40, 45)
        assert msft["status"] == "EXPLAINED"
        fill_id = order.fill_ids[0]
        assert msft["explanation"].startswith(f"broker fill {fill_id} (buy 5 @ ")
        assert f"of order {order.order_id} at " in msft["explanation"]
        assert msft["explanation"].endswith("not yet in the book")
    finally:
        rec.brokerage.close()


def test_a_partly_filled_open_order_already_in_the_book_explains_nothing_twice(
        rec, fresh_sandbox, broker):
    """The fill pull books the executed part of an open order, so its filled quantity no
    longer explains a difference: a break of that size stays a break."""
    fresh_sandbox.market.clock.freeze()  # the rest of the order waits for the next step
    paper = fresh_sandbox.broker(broker)
    order = paper.submit("DEMO-MARGIN-1", "GME", "buy", quantity="1500")  # top of book: 1000
    assert (order.status.value, order.filled_quantity) == ("PARTIALLY_FILLED", 1000)
    run = rec.run()
    gme = row_of(run, "STK:GME")
    assert (gme["book_quantity"], gme["status"]) == (1000, "MATCH")
    paper.set_position("DEMO-MARGIN-1", "GME", "2000", "25")  # a break of the order's size
    gme = row_of(rec.run(), "STK:GME")
    assert (gme["quantity_diff"], gme["status"]) == (1000, "QUANTITY_BREAK")
    assert gme["explanation"] == ""


def test_an_open_orders_fills_inside_an_adopted_position_explain_nothing_twice(
        book_url, paper_url, fresh_sandbox, broker):
    """Fills executed before the book was opened from the broker are in the adopted
    quantity: the open order they belong to does not explain them again."""
    fresh_sandbox.market.clock.freeze()
    paper = fresh_sandbox.broker(broker)
    order = paper.submit("DEMO-MARGIN-1", "GME", "buy", quantity="1500")
    assert order.filled_quantity == 1000
    rec = reconciler(book_url, paper_url, broker)
    try:
        rec.adopt("paper-us", reason="open the book")  # holds the 1000 GME bought
        paper.set_position("DEMO-MARGIN-1", "GME", "2000", "25")
        gme = row_of(rec.run(), "STK:GME")
        assert (gme["book_quantity"], gme["quantity_diff"]) == (1000, 1000)
        assert (gme["status"], gme["explanation"]) == ("QUANTITY_BREAK", "")
    finally:
        rec.brokerage.close()


def test_a_split_survives_a_sandbox_restart_and_the_adapter_still_reads_it(fresh_sandbox,
                                                                          broker):
    from brokerkit.sandbox.demo import Sandbox
    from brokerkit.sandbox.persist import dump, load_into

    fresh_sandbox.broker(broker)
    action = fresh_sandbox.apply_split("AAPL", 4, action_id="AAPL-2020")[broker]
    restored = Sandbox(fresh_sandbox.seed)
    load_into(restored, dump(fresh_sandbox))
    assert restored.market.price("AAPL") == pytest.approx(fresh_sandbox.market.price("AAPL"),
                                                          rel=1e-3)
    assert restored.market.split_factors == {"STK:AAPL": 0.25}
    url = restored.start_servers()["paper"]["url"]
    adapter = PaperAdapter(ConnectionConfig("p", "paper", options={"url": url,
                                                                   "broker": broker}))
    try:
        adapter.connect()
        got = adapter.corporate_actions()
        assert list(got["action_id"]) == ["AAPL-2020"]
        assert (got.loc[0, "account"], got.loc[0, "instrument"], got.loc[0, "ratio"],
                got.loc[0, "kind"]) == ("DEMO-MARGIN-1", "STK:AAPL", 4.0, "split")
        assert got.loc[0, "effective_date"].date() == action.effective_date
        assert adapter.corporate_actions(action.effective_at.replace(year=2100)).empty
        pos = adapter.positions().set_index(["account", "instrument"])
        assert pos.loc[("DEMO-MARGIN-1", "STK:AAPL"), "quantity"] == 480
    finally:
        adapter.close()
        restored.stop_servers()


# -- Alpaca: the same split through alpaca-py's CorporateActionsClient ------------------------

ALPACA_KEY, ALPACA_SECRET = "PKSPLITKEY", "split-secret"
ALPACA_SECRETS = {"api_key": "alpaca_key", "secret_key": "alpaca_secret"}


@pytest.fixture
def alpaca_connection(fresh_sandbox, monkeypatch):
    """The config of an `alpaca` connection to `fresh_sandbox`'s Alpaca server (broker
    "alpaca", account PA-DEMO-1 holding 10 AAPL at 201.50)."""
    from brokerkit import runtime
    from brokerkit.sandbox.alpaca import start_alpaca

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("BROKERKIT_SECRET_ALPACA_KEY", ALPACA_KEY)
    monkeypatch.setenv("BROKERKIT_SECRET_ALPACA_SECRET", ALPACA_SECRET)
    server = runtime.run(start_alpaca(fresh_sandbox, key_id=ALPACA_KEY,
                                      secret_key=ALPACA_SECRET, rate_limit=None))
    yield ConnectionConfig("alpaca", "alpaca", secrets=ALPACA_SECRETS,
                           options={"url": server.url, "rate_limit": False})
    runtime.run(server.close())


def test_alpacas_corporate_actions_report_the_split_the_broker_applied(alpaca_connection,
                                                                        fresh_sandbox,
                                                                        adapters):
    """Alpaca reports splits at `GET /v1/corporate-actions` of its market-data API with
    `new_rate`, `old_rate` and `ex_date` (https://docs.alpaca.markets/reference/
    corporateactions-1); NVIDIA's 10-for-1 of 2024 (NVIDIA press release, 2024-05-22:
    "a ten-for-one forward stock split", trading split-adjusted from 2024-06-10) as the ratio."""
    from brokerkit.adapters.alpaca import AlpacaAdapter
    from brokerkit.secrets import get_secret_store

    adapter = adapters(AlpacaAdapter(alpaca_connection,
                                     get_secret_store().resolve(ALPACA_SECRETS)))
    assert adapter.corporate_actions().empty
    action = fresh_sandbox.broker("alpaca").apply_split("NVDA", 10, action_id="NVDA-2024")
    got = adapter.corporate_actions()
    assert len(got) == 1
    assert (got.loc[0, "account"], got.loc[0, "instrument"], got.loc[0, "symbol"],
            got.loc[0, "ratio"], got.loc[0, "kind"]) == ("PA-DEMO-1", "STK:NVDA", "NVDA",
                                                          10.0, "split")
    assert got.loc[0, "effective_date"].date() == action.effective_date
    fresh_sandbox.broker("alpaca").apply_split("AAPL", "0.5")  # a 1-for-2 reverse split
    both = adapter.corporate_actions()
    assert sorted(zip(both["kind"], both["ratio"], strict=True)) == [("reverse_split", 0.5),
                                                                     ("split", 10.0)]
    after = datetime.combine(action.effective_date + timedelta(days=1), datetime.min.time(),
                             UTC)
    assert adapter.corporate_actions(after).empty


def test_a_split_at_alpaca_is_explained_in_a_reconciliation_run(alpaca_connection,
                                                                 fresh_sandbox, book_url):
    svc = BrokerageService(Settings(connections={"alpaca": alpaca_connection},
                                    book_url=book_url))
    rec = Reconciler(svc, Book(book_url))
    try:
        rec.adopt("alpaca", reason="open the book")
        fresh_sandbox.broker("alpaca").apply_split("AAPL", 4, action_id="AAPL-2020")
        run = rec.run()
        aapl = row_of(run, "STK:AAPL", "PA-DEMO-1")
        assert (aapl["book_quantity"], aapl["broker_quantity"]) == (10, 40)
        assert aapl["status"] == "EXPLAINED"
        assert aapl["explanation"].startswith("corporate action ")
        assert "(split x4) reported by the broker" in aapl["explanation"]
        assert run.unexplained == 0, run.breaks
    finally:
        svc.close()


def test_a_split_is_the_issuers_the_market_price_and_every_brokers_positions_split(
        fresh_sandbox, paper_url, broker):
    """An issuer's 4-for-1 (Apple, 2020-08-31) reaches every account everywhere, and the
    stock trades at a quarter of its price: market value is unchanged by the split."""
    other = fresh_sandbox.broker(f"{broker}-other")
    mine = fresh_sandbox.broker(broker)
    def aapl(b: Any) -> Any:
        (row,) = [p for p in b.positions(["DEMO-MARGIN-1"]) if p.listing.key == "STK:AAPL"]
        return row

    price = fresh_sandbox.market.price("AAPL")
    before = {b.name: aapl(b) for b in (mine, other)}
    status, _ = control(fresh_sandbox, "/v1/corporate_actions",
                        {"broker": broker, "symbol": "AAPL", "ratio": 4})
    assert status == 200
    assert fresh_sandbox.market.price("AAPL") == pytest.approx(price / 4)
    for b in (mine, other):
        after, was = aapl(b), before[b.name]
        assert after.quantity == was.quantity * 4
        assert after.avg_cost == pytest.approx(was.avg_cost / 4)
        assert after.market_value == pytest.approx(was.market_value, rel=0.01)
        assert [a.ratio for a in b.corporate_actions()] == [4]
