"""The brokerkit dashboard for `panel serve dashboards/app.py` (`brokerkit serve` does the same,
with authentication and a safe default address)."""

from brokerkit.ui.app import create_app

create_app().servable()
