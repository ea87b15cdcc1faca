"""Lazy exports for packages: names imported from their modules on first use (PEP 562).

    __getattr__, __dir__ = lazy_exports(__name__, {"Book": "brokerkit.book.store"}, __all__)

keeps `import brokerkit.x` cheap: heavy modules (SQLAlchemy, Panel, SDKs) load only when a name
that needs them is first read; the value is then cached in the package's namespace.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from importlib import import_module
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str], public: Iterable[str] = (),
                 submodules: Iterable[str] = ()
                 ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`: `exports` maps a name to its module;
    `submodules` are importable by attribute (`package.name`)."""
    subs = frozenset(submodules)

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is not None:
            value = getattr(import_module(module), name)
            setattr(sys.modules[package], name, value)
            return value
        if name in subs:
            return import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*public, *exports, *subs})

    return __getattr__, __dir__
