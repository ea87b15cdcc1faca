"""The sandbox's state on disk: accounts, orders, fills and the clock survive a restart.

`dump(sandbox)` pickles what the brokers hold (every `PaperBroker` with its accounts, orders
and fills, the matching engine's open orders, the TWS gateway's order and execution books,
the clock); `load_into(sandbox, data)` puts it back into a freshly made `Sandbox` of the same
seed. The market itself is not stored: it is rebuilt from the seed, and listings are stored
by key, so a restored order trades the same instrument as before. What only lives while a
server runs (fault settings, listeners of connected sessions) starts afresh.

The file is written whole and renamed into place (`write_atomic`), so a crash leaves the
previous snapshot, never half of one. It is a private file of the user's own sandbox; a
snapshot of another format version is refused (`IncompatibleState`), never half-read.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BrokerkitError
from .broker import PaperBroker
from .faults import FaultInjector
from .market import Listing, MatchingEngine

if TYPE_CHECKING:
    from .demo import Sandbox

__all__ = ["FORMAT", "IncompatibleState", "dump", "load_into", "write_atomic"]

#: Bumped whenever what is pickled changes shape; an older snapshot is refused, not misread.
FORMAT = 1


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


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, market: Any) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._market = market
        self._tws = _tws_type()

    def persistent_id(self, obj: Any) -> Any:
        if obj is self._market:
            return ("market",)
        if isinstance(obj, Listing):
            return ("listing", obj.key)
        return None

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, MatchingEngine):
            # only the brokers' own bookkeeping listens across a restart
            keep = [fn for fn in obj._listeners
                    if isinstance(getattr(fn, "__self__", None), (PaperBroker, self._tws))]
            return _engine, (obj.market, dict(obj._open), dict(obj._taken), keep)
        if isinstance(obj, self._tws):
            state = {k: v for k, v in vars(obj).items() if k not in _TWS_TRANSIENT}
            return _tws, (state,)
        if isinstance(obj, FaultInjector):
            return FaultInjector, ()
        return NotImplemented


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, market: Any) -> None:
        super().__init__(file)
        self._market = market

    def persistent_load(self, pid: Any) -> Any:
        if pid == ("market",):
            return self._market
        if isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "listing":
            return self._market.listing(pid[1])
        raise pickle.UnpicklingError(f"unknown reference {pid!r} in the sandbox state")


def dump(sandbox: Sandbox) -> bytes:
    """The sandbox's broker state as bytes (call on the loop that runs its servers)."""
    from .tws.state import tws_states

    brokers = sandbox.brokers
    state = {"format": FORMAT, "seed": sandbox.seed, "clock": sandbox.market.clock,
             "engine": sandbox.engine, "brokers": brokers,
             "tws": {name: tws for name, tws in tws_states(brokers.values()).items()}}
    buf = io.BytesIO()
    _Pickler(buf, sandbox.market).dump(state)
    return buf.getvalue()


def load_into(sandbox: Sandbox, data: bytes) -> None:
    """Restore `dump`'s bytes into `sandbox` (fresh, same seed, no servers running)."""
    from .tws.state import adopt_tws_state

    try:
        state = _Unpickler(io.BytesIO(data), sandbox.market).load()
    except Exception as exc:
        raise IncompatibleState(f"the sandbox state cannot be read ({exc}); "
                                f"`brokerkit sandbox reset` starts over") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise IncompatibleState("the sandbox state was written by another brokerkit version; "
                                "`brokerkit sandbox reset` starts over")
    if state["seed"] != sandbox.seed:
        raise IncompatibleState(f"the sandbox state is of seed {state['seed']}, not "
                                f"{sandbox.seed}; `brokerkit sandbox reset` starts over")
    sandbox.market.clock = state["clock"]
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
