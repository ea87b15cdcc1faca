"""Panel components (param-based `Viewer`s) over brokerkit's services, and the dashboard.

- `StatusView`: each connection's health, latency, last error; the total buying power.
- `BalancesView`: balances by institution and account, with a buying power chart.
- `PositionsView`: positions, filterable, paginated; exposure by asset class and currency.
- `BlotterView`: the journal's orders and fills, live.
- `KillSwitchView`: the trading state, its history; halt / reduce-only / resume by role.
- `TicketView`: the order ticket: preview, place, confirm.
- `ReconciliationView`: the latest reconciliation run, breaks highlighted; run, sync selected.
- `SettlementView`: pending settlements and the cash ladder.
- `create_app(role=...)`: all of them as the pages of the dashboard (`brokerkit serve`).
- `extension()`: loads Panel for the views, every resource inlined (`resources`).

Each renders in JupyterLab, Notebook 7 and VS Code, offline: displayed in a notebook, a view
loads Panel's front end itself, inlined (no CDN; `extension()` is the explicit form), and the
live ones keep refreshing there, as under `panel serve`; the served app in `dashboards/` only
arranges them. Nothing here talks to a broker SDK: components
await the services' `*_async` methods, so a slow broker never blocks the server. Names load on
first use, so `import brokerkit.ui` does not import Panel.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__all__ = ["BalancesView", "BlotterView", "BrokerkitApp", "KillSwitchView", "PositionsView",
           "ReconciliationView", "SettlementView", "StatusView", "TicketView", "create_app",
           "extension"]

_LAZY = {
    "BalancesView": "brokerkit.ui.balances",
    "BlotterView": "brokerkit.ui.blotter",
    "BrokerkitApp": "brokerkit.ui.app",
    "KillSwitchView": "brokerkit.ui.killswitch",
    "PositionsView": "brokerkit.ui.positions",
    "ReconciliationView": "brokerkit.ui.reconcile",
    "SettlementView": "brokerkit.ui.settlement",
    "StatusView": "brokerkit.ui.status",
    "TicketView": "brokerkit.ui.ticket",
    "create_app": "brokerkit.ui.app",
    "extension": "brokerkit.ui.resources",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
