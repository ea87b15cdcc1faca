"""Adapters: one module per institution family, all implementing `adapters.base.Adapter`.

Modules are imported only when a connection of their type is used (`load_adapter_class`),
so `import brokerkit` never loads a broker SDK.
"""

from __future__ import annotations

from importlib import import_module

from .base import Adapter, BrokerOrder, Capabilities, Health

__all__ = ["Adapter", "BrokerOrder", "Capabilities", "Health", "load_adapter_class"]


def load_adapter_class(connection_type: str) -> type[Adapter]:
    """The adapter class for a connection type of `config.CONNECTION_TYPES`."""
    from ..config import CONNECTION_TYPES

    target = CONNECTION_TYPES[connection_type]
    module, _, attr = target.partition(":")
    cls: type[Adapter] = getattr(import_module(module), attr)
    return cls
