"""What keeps the overview fast (benchmarks/dashboard_bench.py measures it): a new session shows
the process's last consolidated figures at once, pages are built when first opened, and the
page sends no MathJax bundle. No browser needed."""

from __future__ import annotations

import urllib.request
from typing import Any

import pandas as pd

from brokerkit import runtime


class _Service:
    """Answers `get_status_async` like `BrokerageService`, counting the calls."""

    def __init__(self, total: float) -> None:
        self.total, self.calls = total, 0

    async def get_status_async(self) -> dict[str, Any]:
        self.calls += 1
        summary = {"base_currency": "USD", "total_buying_power": self.total, "connections": 1,
                   "connected": 1, "degraded": 0, "down": 0}
        return {"summary": summary, "connections": [{"name": "c1", "status": "connected",
                                                     "accounts": ["A1"]}]}

    async def balances_async(self) -> pd.DataFrame:
        return pd.DataFrame()


def test_a_new_view_shows_the_last_shared_fetch_at_once():
    from brokerkit.ui.status import StatusView

    service = _Service(1234.5)
    assert not StatusView(service, autostart=False).prefill()  # nothing fetched yet
    first = StatusView(service, autostart=False)
    assert runtime.run(first.refresh_async())
    second = StatusView(service, autostart=False)
    assert second.prefill() and service.calls == 1  # no second broker call
    assert "1,234.50 USD" in second._summary.object
    assert second.updated_at == first.updated_at
    other = StatusView(_Service(1.0), autostart=False)  # another service: its own data only
    assert not other.prefill()
    stale = StatusView(service, autostart=False, prefill_max_age_s=0)
    assert not stale.prefill()


def test_pages_are_built_when_first_opened():
    from brokerkit.ui.app import create_app

    app = create_app("viewer", "vera", brokerage=_Service(1.0))  # type: ignore[arg-type]
    assert [len(p.objects) for p in app.pages.values()] == [2, 0, 0, 0, 0]
    assert "ticket" not in vars(app) and "reconciliation" not in vars(app)
    views = app._build_page("Trade")
    assert views == [app.killswitch, app.blotter] and app.ticket is None  # a viewer
    assert len(app.pages["Trade"].objects) == 1


def test_the_served_page_sends_no_mathjax_bundle(dashboard):
    with urllib.request.urlopen(dashboard.url, timeout=30) as r:
        html = r.read().decode()
    assert "static/js/bokeh.min.js" in html and "tabulator" in html
    assert "bokeh-mathjax" not in html
