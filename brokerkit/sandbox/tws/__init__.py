"""A TWS-protocol sandbox gateway: the real ib_async SDK connects to it unchanged.

`start_tws(sandbox, host, port, server_version=178)` serves IB's TWS API wire protocol
(server versions 157..178) over loopback, backed by the sandbox broker "ibkr" and its demo
account `DU1234567`. Modules: `codec` (framing), `messages` (server→client builders that
mirror ib_async's decoder), `requests` (client→server parsers that mirror its encoder),
`contracts` (conIds and contract details), `margin`, `ledger` (account value keys), `state`
(the shared broker state), `session` (one connection), `server`, `faults`, `recorder`.
"""

from __future__ import annotations

from .contracts import ContractDB, TwsContract
from .faults import GatewayFaults
from .margin import MarginModel
from .server import MAX_SERVER_VERSION, MIN_SERVER_VERSION, TwsGateway, start_tws
from .state import ACCOUNT, TwsBroker, tws_broker

__all__ = [
    "ACCOUNT",
    "MAX_SERVER_VERSION",
    "MIN_SERVER_VERSION",
    "ContractDB",
    "GatewayFaults",
    "MarginModel",
    "TwsBroker",
    "TwsContract",
    "TwsGateway",
    "start_tws",
    "tws_broker",
]
