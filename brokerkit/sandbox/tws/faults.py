"""Fault injection for the TWS gateway.

Settings that live in the sandbox broker's shared `FaultInjector` (so the control server's
`POST /v1/faults {"broker": "ibkr", ...}` reaches them too):

- endpoint "submit", `drop_after_accept` (True or a count): the gateway books the order (it
  fills as usual) but drops the client's socket before sending any answer;
- endpoint "submit", `accept_late_next` (a count) / `accept_late_rate` (a seeded fraction)
  with `accept_late_s`: the gateway processes a new order's placeOrder only that many seconds
  after it arrived (until then the order does not exist; the session goes on reading), then
  books it and answers openOrder/orderStatus to the session if it is still connected; a
  session that reconnects with the same clientId finds the order (open orders, completed
  orders, executions). An order held when the gateway closes is never placed;
- endpoint "submit", `timeout_rate`, `error_rate` and `rate_limit_rate` (seeded fractions
  of new orders), in TWS's terms: a timeout swallows the placeOrder (never answered, never
  placed), an error drops the client's socket before the order is booked (never placed), a
  rate limit answers the pacing error 100 (reqId -1; shared/reference/tws-protocol.md, 7.3)
  and discards the order (the sandbox's worst case: the client hears nothing about it);
- endpoint "tws" (or "*"), `latency_ms`: delay before each request is handled.

Gateway-only switches (`server.faults`): `connectivity_lost()` / `connectivity_restored()`
(errors 1100 and 1102 or 1101 to every session), `pacing_limit` (error 100 above that many
messages per second per session), `drop_connections()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..faults import LateOrders

if TYPE_CHECKING:
    from ..faults import FaultInjector
    from .server import TwsGateway

__all__ = ["GatewayFaults"]

LOST = "Connectivity between IB and Trader Workstation has been lost."
RESTORED_KEPT = "Connectivity between IB and Trader Workstation has been restored - data " \
                "maintained."
RESTORED_LOST = "Connectivity between IB and Trader Workstation has been restored - data lost."


class GatewayFaults:
    """The gateway's fault switches (see the module docstring)."""

    def __init__(self, gateway: TwsGateway, pacing_limit: int | None = 50) -> None:
        self._gw = gateway
        self.pacing_limit = pacing_limit
        self.connected = True
        self._late = LateOrders(gateway._tasks)  # the gateway cancels them when it closes

    @property
    def _injector(self) -> FaultInjector:
        return self._gw.state.paper.faults

    @property
    def latency_ms(self) -> float:
        return self._injector.settings("tws").latency_ms

    @latency_ms.setter
    def latency_ms(self, value: float) -> None:
        self._injector.set("tws", latency_ms=float(value))

    def drop_next_order(self, count: int = 1) -> None:
        """Book the next `count` orders but drop the connection before answering."""
        self._injector.set("submit", drop_after_accept=count)

    drop_after_order = drop_next_order

    def accept_next_order_late(self, count: int = 1, delay_s: float | None = None) -> None:
        """Process the next `count` new orders `delay_s` (default: `accept_late_s`) after
        they arrive."""
        extra = {} if delay_s is None else {"accept_late_s": delay_s}
        self._injector.set("submit", accept_late_next=count, **extra)

    def take_order_fault(self) -> str | None:
        """The fault a new order meets before it is booked: "timeout", "error",
        "rate_limit" or None (see the module docstring)."""
        return self._injector.take_fault("submit")

    def take_late(self) -> float | None:
        """The delay of this new order's placing (a late accept), or None for now."""
        return self._injector.take_late("submit")

    def place_late(self, delay: float, place: Callable[[], None]) -> None:
        """Run `place()` after `delay` seconds, whether or not its session is still there;
        when the gateway closes first it never runs."""
        self._late.hold(delay, place)

    def connectivity_lost(self) -> None:
        """Send error 1100 to every session."""
        self.connected = False
        self._gw.broadcast_error(1100, LOST)

    def connectivity_restored(self, data_lost: bool = False) -> None:
        """Send 1102 (data maintained; ib_async then re-requests the account summary) or
        1101 (data lost) to every session."""
        self.connected = True
        self._gw.broadcast_error(1101 if data_lost else 1102,
                                 RESTORED_LOST if data_lost else RESTORED_KEPT)

    def drop_connections(self, client_id: int | None = None) -> int:
        """Abort the sockets of `client_id` (default: every session); returns how many."""
        return self._gw.drop_sessions(client_id)

    def clear(self) -> None:
        self._injector.clear("submit")
        self._injector.clear("tws")
        self.connected = True
