"""brokerkit: one place, in Python, to see and act on accounts at many brokers.

    >>> from brokerkit import get_brokerage_service
    >>> status = get_brokerage_service().get_status()
    >>> status["summary"]["total_buying_power"] > 0
    True

With nothing configured, brokerkit runs against its embedded sandbox. Every name below is
imported on first use, so `import brokerkit` stays fast: broker SDKs, Panel and the database
layer load only when something needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # registry
    "BrokerageService": "brokerkit.service",
    "get_brokerage_service": "brokerkit.service",
    "reset_brokerage_service": "brokerkit.service",
    # execution
    "ExecutionService": "brokerkit.execution.service",
    "get_execution_service": "brokerkit.execution.service",
    "reset_execution_service": "brokerkit.execution.service",
    # model
    "AssetClass": "brokerkit.model",
    "Instrument": "brokerkit.model",
    "OrderIntent": "brokerkit.model",
    "OrderResult": "brokerkit.model",
    "OrderStatus": "brokerkit.model",
    "OrderType": "brokerkit.model",
    "Side": "brokerkit.model",
    "TimeInForce": "brokerkit.model",
    "Violation": "brokerkit.model",
    # configuration and secrets
    "ConnectionConfig": "brokerkit.config",
    "Settings": "brokerkit.config",
    "load_settings": "brokerkit.config",
    "use_scratch_profile": "brokerkit.scratch",
    "Secret": "brokerkit.secrets",
    "get_secret_store": "brokerkit.secrets",
    # errors
    "AdapterError": "brokerkit.errors",
    "BookUnavailable": "brokerkit.errors",
    "BrokerkitError": "brokerkit.errors",
    "ConfigError": "brokerkit.errors",
    "ConnectionDown": "brokerkit.errors",
    "InvalidIntent": "brokerkit.errors",
    "SecretNotFound": "brokerkit.errors",
    "SubmitUncertain": "brokerkit.errors",
    # the book and fx
    "Book": "brokerkit.book",
    "open_book": "brokerkit.book",
    "FxRates": "brokerkit.fx",
}

_SUBMODULES = {"frames", "runtime", "sandbox", "adapters", "book", "execution", "post_trade",
               "ui", "config", "model", "errors", "fx", "secrets", "service", "profile", "scratch"}

__all__ = [
    "AdapterError",
    "AssetClass",
    "Book",
    "BookUnavailable",
    "BrokerageService",
    "BrokerkitError",
    "ConfigError",
    "ConnectionConfig",
    "ConnectionDown",
    "ExecutionService",
    "FxRates",
    "Instrument",
    "InvalidIntent",
    "OrderIntent",
    "OrderResult",
    "OrderStatus",
    "OrderType",
    "Secret",
    "SecretNotFound",
    "Settings",
    "Side",
    "SubmitUncertain",
    "TimeInForce",
    "Violation",
    "__version__",
    "get_brokerage_service",
    "get_execution_service",
    "get_secret_store",
    "load_settings",
    "open_book",
    "reset_brokerage_service",
    "reset_execution_service",
    "use_scratch_profile",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, __all__, _SUBMODULES)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .book import (
        Book,
        open_book,
    )
    from .config import (
        ConnectionConfig,
        Settings,
        load_settings,
    )
    from .errors import (
        AdapterError,
        BrokerkitError,
        ConfigError,
        ConnectionDown,
        InvalidIntent,
        SecretNotFound,
        SubmitUncertain,
    )
    from .execution.service import (
        ExecutionService,
        get_execution_service,
        reset_execution_service,
    )
    from .fx import FxRates
    from .model import (
        AssetClass,
        Instrument,
        OrderIntent,
        OrderResult,
        OrderStatus,
        OrderType,
        Side,
        TimeInForce,
        Violation,
    )
    from .secrets import (
        Secret,
        get_secret_store,
    )
    from .service import (
        BrokerageService,
        get_brokerage_service,
        reset_brokerage_service,
    )
