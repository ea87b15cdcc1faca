"""One TCP connection to the gateway: handshake, startApi, and every request handler.

A session negotiates the server version (min of the client's max and the gateway's max),
accepts `startApi` unless its clientId is already connected (error 326, then close), and
answers requests in arrival order. Handlers never drop the socket on a bug: they answer
error 322 with the request's id instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from . import messages as m
from .codec import FieldError, Fields, FrameBuffer, frame, parse_hello
from .contracts import TwsContract
from .ledger import account_values, summary_rows
from .recorder import SessionLog
from .records import TwsOrder
from .requests import PlaceOrderRequest, parse_contract, parse_place_order
from .state import PortfolioLine, ib_time

if TYPE_CHECKING:
    from .server import TwsGateway

__all__ = ["Session"]

_log = logging.getLogger(__name__)
Handler = Callable[[list[str]], None]


class Session:
    """One API client connection."""

    def __init__(self, gateway: TwsGateway, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.gw = gateway
        self.state = gateway.state
        self.reader, self.writer = reader, writer
        peer = writer.get_extra_info("peername")
        self.log: SessionLog = gateway.recorder.open(str(peer))
        self.version = 0
        self.client_id: int | None = None
        self.started = False
        self.closed = False
        self.positions_sub = False
        self.account_sub: str | None = None
        self.multi_subs: dict[int, str] = {}
        self.summary_subs: dict[int, list[str]] = {}
        self.mkt_subs: dict[int, TwsContract] = {}
        self._buf = FrameBuffer()
        self._times: deque[float] = deque()
        self._paced_at = 0.0
        self._handlers: dict[int, Handler] = {
            1: self._req_mkt_data, 2: self._cancel_mkt_data, 3: self._place_order,
            4: self._cancel_order, 5: self._req_open_orders, 6: self._req_account_updates,
            7: self._req_executions, 8: self._req_ids, 9: self._req_contract_details,
            15: self._ignore, 16: self._req_all_open_orders, 17: self._req_managed_accts,
            49: self._req_current_time, 58: self._req_global_cancel, 59: self._ignore,
            61: self._req_positions, 62: self._req_account_summary,
            63: self._cancel_account_summary, 64: self._cancel_positions,
            76: self._req_account_updates_multi, 77: self._cancel_account_updates_multi,
            99: self._req_completed_orders,
        }

    def __repr__(self) -> str:
        return f"<Session client={self.client_id} v{self.version}>"

    # -- transport --------------------------------------------------------------------------
    def send(self, fields: list[object]) -> None:
        if self.closed:
            return
        data = frame(fields)
        self.log.record("out", [str(f) if f is not None else "" for f in fields])
        self.writer.write(data)

    def error(self, req_id: int, code: int, text: str) -> None:
        self.send(m.error(self.version, req_id, code, text))

    def abort(self) -> None:
        """Drop the socket now (nothing more is sent)."""
        if not self.closed:
            self.closed = True
            self.gw.forget(self)
            self.writer.transport.abort()

    async def run(self) -> None:
        try:
            while not self.closed:
                data = await self.reader.read(65536)
                if not data:
                    break
                self._buf.feed(data)
                try:
                    msgs = self._buf.messages()
                except FieldError as exc:
                    _log.warning("tws session %s: %s; closing", self.log.session_id, exc)
                    break
                for fields in msgs:
                    if self.closed:
                        break
                    await self._dispatch(fields)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed = True
            self.gw.forget(self)
            if not self.writer.is_closing():
                self.writer.close()

    async def _dispatch(self, fields: list[str]) -> None:
        self.log.record("in", fields)
        if not self.version:
            self._hello(fields[0])
            return
        latency = self.gw.faults.latency_ms
        if latency:
            await asyncio.sleep(latency / 1000)
        self._pace()
        try:
            msg_id = int(fields[0])
        except (ValueError, IndexError):
            self.error(-1, 322, f"Error processing request.-unreadable message {fields[:3]}")
            return
        if not self.started:
            if msg_id == 71:
                self._start_api(fields)
            else:
                self.error(-1, 322, "Error processing request.-API not started")
            return
        handler = self._handlers.get(msg_id)
        if handler is None:
            self._unsupported(msg_id, fields)
        else:
            self._handle(msg_id, fields, handler)

    def _handle(self, msg_id: int, fields: list[str], handler: Handler) -> None:
        """`handler(fields)`; a bad request or a gateway bug answers error 322 with the
        request's id (the connection stays)."""
        try:
            handler(fields)
        except (FieldError, ValueError, IndexError) as exc:
            _log.warning("tws: bad request %s: %s", fields[:4], exc)
            self.error(_req_id_of(msg_id, fields), 322,
                       f"Error processing request.-'{msg_id}' : {exc}")
        except Exception as exc:  # a gateway bug: answer, keep the connection
            _log.exception("tws: handler for %s failed", fields[:4])
            self.error(_req_id_of(msg_id, fields), 322,
                       f"Error processing request.-'{msg_id}' : sandbox error {exc}")

    def _pace(self) -> None:
        limit = self.gw.faults.pacing_limit
        if not limit:
            return
        now = time.monotonic()
        self._times.append(now)
        while self._times and self._times[0] < now - 1.0:
            self._times.popleft()
        if len(self._times) > limit and now - self._paced_at >= 1.0:
            self._paced_at = now
            self.error(-1, 100, f"Max rate of messages per second has been exceeded:max={limit}"
                                f" rec={len(self._times)} (543)")

    # -- handshake --------------------------------------------------------------------------
    def _hello(self, text: str) -> None:
        try:
            hello = parse_hello(text)
        except FieldError:
            self.abort()
            return
        top = self.gw.server_version
        if hello.min_version > top:
            self.abort()
            return
        self.version = min(hello.max_version, top)
        self.send([self.version, ib_time(self.state.market.now())])

    def _start_api(self, fields: list[str]) -> None:
        f = Fields(fields[1:])
        f.skip(1)
        client_id = f.int()
        existing = self.gw.sessions.get(client_id)
        if existing is not None and not existing.closed \
                and not existing.writer.transport.is_closing():
            self.error(-1, 326, "Unable to connect as the client id is already in use. Retry "
                                "with a unique client id.")
            self.closed = True
            self.writer.close()
            return
        self.client_id = self.log.client_id = client_id
        self.started = True
        self.gw.sessions[client_id] = self
        self.send(m.managed_accounts(self.state.accounts))
        self.send(m.next_valid_id(self.state.next_valid_id(client_id)))
        for code, text in ((2104, "Market data farm connection is OK:usfarm"),
                           (2106, "HMDS data farm connection is OK:ushmds"),
                           (2158, "Sec-def data farm connection is OK:secdefnj")):
            self.error(-1, code, text)

    # -- simple requests --------------------------------------------------------------------
    def _ignore(self, fields: list[str]) -> None:
        pass

    def _unsupported(self, msg_id: int, fields: list[str]) -> None:
        _log.info("tws: unsupported request %s", fields[:4])
        self.error(_req_id_of(msg_id, fields), 322,
                   f"Error processing request.-'{msg_id}' : unsupported by sandbox")

    def _req_current_time(self, fields: list[str]) -> None:
        self.send(m.current_time(int(self.state.market.now().timestamp())))

    def _req_ids(self, fields: list[str]) -> None:
        assert self.client_id is not None
        self.send(m.next_valid_id(self.state.next_valid_id(self.client_id)))

    def _req_managed_accts(self, fields: list[str]) -> None:
        self.send(m.managed_accounts(self.state.accounts))

    # -- positions and account --------------------------------------------------------------
    def _req_positions(self, fields: list[str]) -> None:
        self.positions_sub = True
        for account in self.state.accounts:
            for ln in self.state.snapshot(account).lines:
                self.send(m.position(account, ln.contract, ln.qty, ln.avg_cost))
        self.send(m.position_end())

    def _cancel_positions(self, fields: list[str]) -> None:
        self.positions_sub = False

    def _account(self, code: str) -> str | None:
        code = code or (self.state.accounts[0] if len(self.state.accounts) == 1 else "")
        return code if code in self.state.accounts else None

    def _req_account_updates(self, fields: list[str]) -> None:
        f = Fields(fields[1:])
        f.skip(1)
        subscribe = f.bool()
        account = self._account(f.opt_str())
        if not subscribe:
            self.account_sub = None
            return
        if account is None:
            self.error(-1, 321, "Error validating request.-'bk' : cause - invalid account")
            return
        self.account_sub = account
        self.send_account(account, full=True)

    def send_account(self, account: str, full: bool = False,
                     lines: list[PortfolioLine] | None = None) -> None:
        """Account values, portfolio lines (all, or `lines`), time, and (full) the End."""
        snap = self.state.snapshot(account)
        for key, value, ccy in account_values(snap, self.state.margin.buying_power_multiple):
            self.send(m.account_value(key, value, ccy, account))
        for ln in snap.lines if lines is None else lines:
            self.send(m.portfolio(ln.contract, ln.qty, ln.price, ln.value, ln.avg_cost,
                                  ln.unrealized, ln.realized, account))
        self.send(m.account_time(self.state.market.now().strftime("%H:%M")))
        if full:
            self.send(m.account_download_end(account))

    def _req_account_updates_multi(self, fields: list[str]) -> None:
        f = Fields(fields[1:])
        f.skip(1)
        req_id = f.int()
        account = self._account(f.str())
        model = f.opt_str()
        if account is None:
            self.error(req_id, 322, "Error processing request.-invalid account")
            return
        self.multi_subs[req_id] = account
        snap = self.state.snapshot(account)
        for key, value, ccy in account_values(snap, self.state.margin.buying_power_multiple):
            self.send(m.account_update_multi(req_id, account, model, key, value, ccy))
        self.send(m.account_update_multi_end(req_id))

    def _cancel_account_updates_multi(self, fields: list[str]) -> None:
        self.multi_subs.pop(int(fields[2]), None)

    def _req_account_summary(self, fields: list[str]) -> None:
        f = Fields(fields[1:])
        f.skip(1)
        req_id = f.int()
        f.skip(1)  # group ("All")
        tags = [t for t in f.str().split(",") if t.strip()]
        self.summary_subs[req_id] = tags
        self.send_summary(req_id, tags)
        self.send(m.account_summary_end(req_id))

    def send_summary(self, req_id: int, tags: list[str]) -> None:
        for account in self.state.accounts:
            snap = self.state.snapshot(account)
            for tag, value, ccy in summary_rows(snap, tags,
                                                self.state.margin.buying_power_multiple):
                self.send(m.account_summary(req_id, account, tag, value, ccy))

    def _cancel_account_summary(self, fields: list[str]) -> None:
        self.summary_subs.pop(int(fields[2]), None)

    # -- contracts and market data ----------------------------------------------------------
    def _req_contract_details(self, fields: list[str]) -> None:
        f = Fields(fields[1:])
        f.skip(1)
        req_id = f.int()
        q = parse_contract(f)
        found = self.state.contracts.match(q)
        if not found:
            self.error(req_id, 200, "No security definition has been found for the request")
            return
        for c in found:
            exch = q.exchange.upper() if q.exchange else c.exchange
            if exch == "XETRA":
                exch = "IBIS"
            hours = self._hours(c)
            self.send(m.contract_details(self.version, req_id, c, exch, hours, hours))
        self.send(m.contract_details_end(req_id))

    def _hours(self, c: TwsContract) -> str:
        """Today's hours in the listing's time zone, as IB writes them: the whole day when
        the sandbox market is always open, `CLOSED` when the session is shut today."""
        s = c.listing.session
        market = self.state.market
        now = market.now().astimezone(ZoneInfo(s.tz))
        day = now.strftime("%Y%m%d")
        if market.always_open or s.kind == "24/7":
            return f"{day}:0000-{(now + timedelta(days=1)):%Y%m%d}:0000"
        if s.kind == "regular" and now.weekday() >= 5:
            return f"{day}:CLOSED"
        if s.kind == "24/5":
            return f"{day}:0000-{(now + timedelta(days=1)):%Y%m%d}:0000" \
                if s.is_open(now) else f"{day}:CLOSED"
        return f"{day}:{s.open:%H%M}-{day}:{s.close:%H%M}"

    def resolve(self, q_fields: Fields) -> TwsContract | None:
        q = parse_contract(q_fields)
        found = self.state.contracts.match(q)
        return found[0] if len(found) == 1 else None

    def _req_mkt_data(self, fields: list[str]) -> None:
        f = Fields(fields[1:])
        f.skip(1)
        req_id = f.int()
        q = parse_contract(f)
        if q.sec_type == "BAG":
            for _ in range(f.int()):
                f.skip(4)
        if f.bool():
            f.skip(3)
        f.skip(1)  # genericTickList
        snapshot = f.bool()
        found = self.state.contracts.match(q)
        if len(found) != 1:
            self.error(req_id, 200, "No security definition has been found for the request")
            return
        c = found[0]
        self.send(m.market_data_type(req_id, 1))
        self.send(m.tick_req_params(req_id, c.min_tick, "SMART", 3))
        self.send_ticks(req_id, c, full=True)
        if snapshot:
            self.send(m.tick_snapshot_end(req_id))
        else:
            self.mkt_subs[req_id] = c

    def send_ticks(self, req_id: int, c: TwsContract, full: bool = False) -> None:
        market = self.state.market
        q = market.quote(c.listing)
        self.send(m.tick_price(req_id, 1, float(q.bid), float(q.bid_size)))
        self.send(m.tick_price(req_id, 2, float(q.ask), float(q.ask_size)))
        self.send(m.tick_price(req_id, 4, float(q.last), 100.0))
        if full:
            prev = market.quote(c.listing, q.as_of.replace(hour=0, minute=0, second=0,
                                                           microsecond=0))
            self.send(m.tick_price(req_id, 9, float(prev.last), 0.0))
            self.send(m.tick_size(req_id, 8, float(c.listing.top_size) * 37))
            self.send(m.tick_string(req_id, 45, str(int(q.as_of.timestamp()))))

    def _cancel_mkt_data(self, fields: list[str]) -> None:
        self.mkt_subs.pop(int(fields[2]), None)

    # -- orders -----------------------------------------------------------------------------
    def _place_order(self, fields: list[str]) -> None:
        assert self.client_id is not None
        req = parse_place_order(self.version, fields[1:])
        if req.leftover:
            _log.warning("tws: placeOrder had %d unread fields: %s", req.leftover,
                         fields[-req.leftover:])
        ids = self.state.max_order_id
        if not req.what_if and req.order_id > ids.get(self.client_id, 0):  # a new order
            fault = self.gw.faults.take_order_fault()
            if fault == "rate_limit":  # paced out: the order is discarded
                self.error(-1, 100, "Max rate of messages per second has been exceeded.")
                return
            if fault == "error":  # the connection fails before the order is booked
                self.abort()
                return
            if fault == "timeout":  # swallowed: never answered, never placed
                return
            late = self.gw.faults.take_late()
            if late is not None:  # a late accept: processed then, session or not
                ids[self.client_id] = req.order_id  # taken now: nextValidId passes it
                self.gw.faults.place_late(late, lambda: self._handle(
                    3, fields, lambda _: self._place(req, id_taken=True)))
                return
        self._place(req)

    def _place(self, req: PlaceOrderRequest, *, id_taken: bool = False) -> None:
        """Book the order of a placeOrder (or modify it, or answer its what-if); answers go
        to this session while it is connected. `id_taken`: a late accept took its order id
        when it arrived."""
        assert self.client_id is not None
        oid = req.order_id
        found = self.state.contracts.match(req.contract)
        if len(found) != 1:
            self.error(oid, 200, "No security definition has been found for the request")
            return
        c = found[0]
        account = self._account(req.account)
        if account is None:
            self.error(oid, 201, f"Order rejected - reason:account {req.account!r} is not "
                                 f"managed by this login")
            return
        if req.action not in ("BUY", "SELL") or req.total_qty <= 0:
            self.error(oid, 201, "Order rejected - reason:the order needs BUY or SELL and a "
                                 "positive quantity")
            return
        if req.what_if:
            w = self.state.what_if(account, c, req.action, req.total_qty, req.lmt_price)
            view = TwsOrder(0, self.client_id, oid, account, c,
                            req.contract.exchange or c.exchange, req.action, req.total_qty,
                            req.order_type, req.lmt_price, req.aux_price, req.tif or "DAY",
                            order_ref=req.order_ref)
            self.send(m.open_order(self.version, view, "PreSubmitted", w))
            return
        existing = self.state.order_for(self.client_id, oid)
        if existing is not None:
            self._modify(existing, req.total_qty, req.lmt_price, req.aux_price)
            return
        if not id_taken and oid <= self.state.max_order_id.get(self.client_id, 0):
            self.error(oid, 103, "Duplicate order id")
            return
        w = self.state.what_if(account, c, req.action, req.total_qty, req.lmt_price)
        o = self.state.new_order(
            client_id=self.client_id, order_id=oid, account=account, contract=c,
            exchange=req.contract.exchange or c.exchange, action=req.action,
            total_qty=req.total_qty, order_type=req.order_type, lmt_price=req.lmt_price,
            aux_price=req.aux_price, tif=req.tif or "DAY", oca_group=req.oca_group,
            open_close=req.open_close, origin=req.origin, order_ref=req.order_ref,
            outside_rth=req.outside_rth, hidden=req.hidden,
            good_after_time=req.good_after_time, good_till_date=req.good_till_date,
            parent_id=req.parent_id, trailing_percent=req.trailing_percent,
            trail_stop_price=req.trail_stop_price, cash_qty=req.cash_qty)
        if w.init_change > 0 and w.ewl_after < w.init_after:
            reason = (f"YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE DESIRED POSITION "
                      f"YOUR EQUITY WITH LOAN VALUE [{w.ewl_after:.2f} USD] MUST EXCEED THE "
                      f"INITIAL MARGIN [{w.init_after:.2f} USD]")
            self.state._reject(o, reason)
            self.error(oid, 201, f"Order rejected - reason:{reason}")
            return
        if self.state.paper.faults.take_drop("submit"):
            self.abort()  # the answer is lost; the order still goes to the market
            self.state.submit(o)
            self.state.flush()
            return
        reason = self.state.submit(o)
        if reason:
            self.error(oid, 201, f"Order rejected - reason:{reason}")
            return
        self.send(m.open_order(self.version, o, "PreSubmitted"))
        self.send(_status(o, "PreSubmitted"))
        self.send(m.open_order(self.version, o, "Submitted"))
        self.send(_status(o, "Submitted"))
        self.state.flush()

    def _modify(self, o: TwsOrder, qty: float, lmt: float | None, aux: float | None) -> None:
        if not o.is_open:
            self.error(o.order_id, 104, "Can't modify a filled order")
            return
        paper = self.state.paper
        if o.paper_order_id is not None:
            paper.cancel(o.paper_order_id)
        self.state.flush()
        if not o.is_open:
            self.error(o.order_id, 104, "Can't modify a filled order")
            return
        o.total_qty, o.lmt_price, o.aux_price = qty, lmt, aux
        filled = o.filled
        if o.remaining <= 0:
            o.status = o.completed_status = "Filled"
            self.send(m.order_status(o))
            return
        # resubmit the rest under the same permId
        total = o.total_qty
        o.total_qty = o.remaining
        reason = self.state.submit(o)
        o.total_qty = total
        o.filled = filled
        if reason:
            self.error(o.order_id, 201, f"Order rejected - reason:{reason}")
            return
        self.send(m.open_order(self.version, o, "Submitted"))
        self.send(m.order_status(o, "Submitted"))
        self.state.flush()

    def _cancel_order(self, fields: list[str]) -> None:
        assert self.client_id is not None
        oid = int(fields[2])
        o = self.state.order_for(self.client_id, oid)
        if o is None:
            self.error(oid, 10147, f"OrderId {oid} that needs to be cancelled is not found.")
            return
        if not o.is_open:
            self.error(oid, 10148, f"OrderId {oid} that needs to be cancelled cannot be "
                                   f"cancelled, state: {o.status}.")
            return
        self.state.cancel(o)
        self.gw.order_cancelled(o)

    def _req_global_cancel(self, fields: list[str]) -> None:
        for o in self.state.working():
            self.state.cancel(o)
            self.gw.order_cancelled(o)

    def send_open_order(self, o: TwsOrder) -> None:
        self.send(m.open_order(self.version, o))
        self.send(m.order_status(o))

    def _req_open_orders(self, fields: list[str]) -> None:
        for o in self.state.working():
            if o.client_id == self.client_id:
                self.send_open_order(o)
        self.send(m.open_order_end())

    def _req_all_open_orders(self, fields: list[str]) -> None:
        for o in self.state.working():
            self.send_open_order(o)
        self.send(m.open_order_end())

    def _req_completed_orders(self, fields: list[str]) -> None:
        for o in self.state.completed():
            self.send(m.completed_order(self.version, o))
        self.send(m.completed_orders_end())

    def _req_executions(self, fields: list[str]) -> None:
        f = Fields(fields[1:])
        f.skip(1)
        req_id = f.int()
        client_id = f.int()
        account, since, symbol, sec_type, _exchange, side = (f.opt_str() for _ in range(6))
        side = {"BUY": "BOT", "SELL": "SLD"}.get(side.upper(), side.upper())
        for e in self.state.executions:
            o = e.order
            if client_id and o.client_id != client_id:
                continue
            if account and o.account != account:
                continue
            if symbol and o.contract.symbol != symbol.upper():
                continue
            if sec_type and o.contract.sec_type != sec_type.upper():
                continue
            if side and e.side != side:
                continue
            if since and e.time[:17].replace("-", " ") < since[:17].replace("-", " "):
                continue
            self.send(m.exec_details(self.version, req_id, e))
            self.send(m.commission_report(e))
        self.send(m.exec_details_end(req_id))


def _status(o: TwsOrder, status: str) -> list[object]:
    """orderStatus before any fill is reported (filled 0, remaining all)."""
    return [3, o.order_id, status, 0.0, o.total_qty, 0.0, o.perm_id, o.parent_id, 0.0,
            o.client_id, "", 0.0]


def _req_id_of(msg_id: int, fields: list[str]) -> int:
    """The request id of a message, for error answers (-1 when it has none)."""
    no_version = {3: 1, 20: 1, 78: 1, 81: 1, 92: 1, 94: 1, 4: 2}
    idx = no_version.get(msg_id, 2)
    try:
        return int(fields[idx])
    except (IndexError, ValueError):
        return -1

