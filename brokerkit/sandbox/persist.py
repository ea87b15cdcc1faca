"""The sandbox's state on disk: accounts, orders, fills and the clock survive a restart.

`dump(sandbox)` pickles what the brokers hold (every `PaperBroker` with its accounts, orders,
fills and corporate actions, the matching engine's open orders, the TWS gateway's order and
execution books, the clock); `load_into(sandbox, data)` puts it back into a freshly made
`Sandbox` of the same seed. The market itself is not stored: it is rebuilt from the seed, and
listings are stored by key, so a restored order trades the same instrument as before. The
sandbox's own types are stored through the pickler's `dispatch_table`, so everything else
pickles at C speed (about 0.15 s for 3,000 orders with Python hooks on every object; see
`_dispatch`). What only lives while a server runs (fault settings, listeners of connected
sessions) starts afresh.

The file is written whole and renamed into place (`write_atomic`), so a crash leaves the
previous snapshot, never half of one. It is a private file of the user's own sandbox; a
snapshot of another format version is refused (`IncompatibleState`), never half-read.
"""

from __future__ import annotations

import contextvars
import copyreg
import io
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BrokerkitError
from .broker import PaperBroker
from .faults import FaultInjector
from .market import Listing, Market, MatchingEngine

if TYPE_CHECKING:
    from .demo import Sandbox

__all__ = ["FORMAT", "IncompatibleState", "dump", "load_into", "write_atomic"]

#: Bumped whenever what is pickled changes shape; an older snapshot is refused, not misread.
#: 2: a `PaperBroker` holds its corporate actions (`_actions`).
FORMAT = 2


class IncompatibleState(BrokerkitError):
    """The state file was written by another format or seed; reset the sandbox to start over."""


def _tws_type() -> type:
    from .tws.state import TwsBroker

    return TwsBroker


#: TwsBroker attributes that belong to running sessions, not to the broker's books.
_TWS_TRANSIENT = frozenset({"_listeners", "_loop", "_flush_scheduled"})


def _engine(market: Any, open_orders: dict[str, Any], taken: dict[Any, Any],
            listeners: list[Any]) -> MatchingEngine:
    engine = MatchingEngine(market)
    engine._open.update(open_orders)
    engine._taken.update(taken)
    engine._listeners.extend(listeners)
    return engine


def _tws(state: dict[str, Any]) -> Any:
    cls = _tws_type()
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    obj._listeners, obj._loop, obj._flush_scheduled = [], None, False
    return obj


#: The market a load restores into: what a stored market or listing stands for.
_LOADING: contextvars.ContextVar[Market] = contextvars.ContextVar("sandbox_market")


def _market() -> Market:
    return _LOADING.get()


def _listing(key: str) -> Listing:
    return _LOADING.get().listing(key)


def _keep_engine(engine: MatchingEngine) -> tuple[Any, ...]:
    # only the brokers' own bookkeeping listens across a restart
    owners = (PaperBroker, _tws_type())
    keep = [fn for fn in engine._listeners
            if isinstance(getattr(fn, "__self__", None), owners)]
    return _engine, (engine.market, dict(engine._open), dict(engine._taken), keep)


def _keep_tws(tws: Any) -> tuple[Any, ...]:
    return _tws, ({k: v for k, v in vars(tws).items() if k not in _TWS_TRANSIENT},)


def _dispatch() -> dict[type, Any]:
    """How the sandbox's own types are stored; a table the C pickler reads by type, so every
    other object pickles at C speed (no Python hook runs for it)."""
    table = dict(copyreg.dispatch_table)
    table.update({Market: lambda m: (_market, ()), Listing: lambda li: (_listing, (li.key,)),
                  MatchingEngine: _keep_engine, _tws_type(): _keep_tws,
                  FaultInjector: lambda f: (FaultInjector, ())})
    return table


def dump(sandbox: Sandbox) -> bytes:
    """The sandbox's broker state as bytes (call on the loop that runs its servers)."""
    from .tws.state import tws_states

    brokers = sandbox.brokers
    state = {"format": FORMAT, "seed": sandbox.seed, "clock": sandbox.market.clock,
             "splits": dict(sandbox.market.split_factors),
             "engine": sandbox.engine, "brokers": brokers,
             "tws": {name: tws for name, tws in tws_states(brokers.values()).items()}}
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _dispatch()
    pickler.dump(state)
    return buf.getvalue()


def load_into(sandbox: Sandbox, data: bytes) -> None:
    """Restore `dump`'s bytes into `sandbox` (fresh, same seed, no servers running)."""
    from .tws.state import adopt_tws_state

    token = _LOADING.set(sandbox.market)
    try:
        state = pickle.loads(data)
    except Exception as exc:
        raise IncompatibleState(f"the sandbox state cannot be read ({exc}); "
                                f"`brokerkit sandbox reset` starts over") from exc
    finally:
        _LOADING.reset(token)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise IncompatibleState("the sandbox state was written by another brokerkit version; "
                                "`brokerkit sandbox reset` starts over")
    if state["seed"] != sandbox.seed:
        raise IncompatibleState(f"the sandbox state is of seed {state['seed']}, not "
                                f"{sandbox.seed}; `brokerkit sandbox reset` starts over")
    sandbox.market.clock = state["clock"]
    sandbox.market.split_factors = dict(state.get("splits", {}))
    sandbox.restore_brokers(state["engine"], state["brokers"])
    for name, tws in state["tws"].items():
        adopt_tws_state(sandbox.broker(name), tws)


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` whole: a temporary file beside it, synced, then renamed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
