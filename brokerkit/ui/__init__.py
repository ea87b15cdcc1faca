"""Panel components (param-based `Viewer`s) over brokerkit's services.

Each renders in JupyterLab (after `pn.extension('tabulator')`) and under `panel serve`; the
served app in `dashboards/` only arranges them. Nothing here talks to a broker SDK: components
call the services' `*_async` methods, so a slow broker never blocks the server.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["TicketView"]

_LAZY = {"TicketView": "brokerkit.ui.ticket"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'brokerkit.ui' has no attribute {name!r}")
