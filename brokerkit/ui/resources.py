"""Panel's front end from this machine only: `extension()`, and the views' own notebook set-up.

brokerkit's views work without internet, in a notebook and under `brokerkit serve`:

- `extension()` loads every Panel extension the views use (`EXTENSIONS`) with Bokeh's and
  Panel's JavaScript and CSS *inlined* into the notebook (`pn.extension(..., inline=True)`):
  nothing is fetched from a CDN. The views call it themselves the first time one is displayed
  in a notebook (`ensure_extension()`); calling it by hand is never needed, and harmless.
- Panel names its components' stylesheets by CDN URL and rewrites them to local copies only
  for what it renders with a page (a served page) or a cell (inline mode); a pane updated
  later, or one on a hidden tab, goes out with the CDN URL again (holoviz/panel#7073,
  #8707). `keep_stylesheets_local()` makes every such URL a `data:` URL of Panel's own copy of
  the file, so no request leaves the machine.
- `fallback_html(name)` is what a cell shows in words when Panel's front end cannot load
  (JupyterLab without Panel's extension, a front end that does not run output JavaScript).
- `NotebookReady.on_display_loop(fn)`: a view displayed in a notebook changes its widgets on
  the kernel loop that displayed it, and nowhere else. In a kernel, Panel sends a view's
  changes as Bokeh document patches over its comm, one patch per change, from the thread that
  made the change; a patch made before the front end opened the comm is retried on *that*
  thread's loop every 0.1 s. Changes made from brokerkit's runtime thread (`ticket.preview()`
  in a cell), a JupyterLab comm subshell (a button click) and the kernel's loop (live refresh)
  reached the browser out of order, or interleaved in one Bokeh document: a patch naming a
  model (a pane's new stylesheet) before the patch defining it ("reference <id> isn't known"),
  an older `disabled=True` after the newer `False` (a Preview button left disabled).

Panel documents `inline` at https://panel.holoviz.org/api/config.html (resources inlined, "for
use without internet"), and notebook use at
https://panel.holoviz.org/how_to/notebook/notebook.html.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import functools
import html
import mimetypes
import re
import string
import threading
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["EXTENSIONS", "NotebookReady", "ensure_extension", "extension", "fallback_html",
           "in_notebook", "keep_stylesheets_local", "local_dist_url", "prepare_served_document",
           "with_fallback"]

T = TypeVar("T")

#: The Panel extensions brokerkit's views use (the blotter, status, positions... tables).
EXTENSIONS: tuple[str, ...] = ("tabulator",)

_lock = threading.Lock()
_loaded = False
_patched = False


def in_notebook() -> bool:
    """True inside an IPython kernel (a Jupyter notebook, VS Code, JupyterLab)."""
    if not hasattr(builtins, "__IPYTHON__"):
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def extension(*extra: str, **params: Any) -> None:
    """Load Panel for brokerkit's views, every resource inlined (no CDN), once per kernel.

    `extra` adds Panel extensions of your own (e.g. "plotly"); `params` go to
    `pn.extension` (e.g. `comms="vscode"`). In a plain script it only configures Panel."""
    global _loaded
    import panel as pn

    keep_stylesheets_local()
    params.setdefault("inline", True)
    with _lock:
        pn.extension(*EXTENSIONS, *extra, **params)
        _loaded = True


def ensure_extension() -> None:
    """`extension()` unless it ran: what a view does when first displayed in a notebook."""
    if not _loaded and in_notebook():
        extension()


def fallback_html(name: str) -> str:
    """HTML telling, in words, why a view shows nothing: hidden at once by the view's own
    JavaScript when Panel's front end runs, left visible when it does not."""
    note = (f"<b>{html.escape(name)}</b> is loading. If this message stays, this front end "
            "does not run Panel's JavaScript. In JupyterLab or Notebook 7, install brokerkit's "
            "notebook extra (<code>pip install 'brokerkit[notebooks]'</code>, which brings "
            "Panel's Jupyter extension, <code>pyviz_comms</code>), restart JupyterLab, then "
            "trust the notebook and re-run the cell. In VS Code, install "
            "<code>jupyter_bokeh</code>.")
    return (f'<div class="brokerkit-fallback" style="padding:6px;border:1px solid #c33;'
            f'color:#c33">{note}</div>')


class NotebookReady:
    """Mixin for brokerkit's Panel components: displayed in a notebook, a component loads
    Panel's front end itself (`ensure_extension()`), and its cell says in words why it shows
    nothing when that front end cannot run (`fallback_html`), or in a text-only front end.

    It also keeps every change to its widgets on the kernel loop that displayed it
    (`on_display_loop`, `run_on_display_loop`): Panel's notebook updates are only ordered,
    and a Bokeh document only consistent, when they all come from one thread."""

    #: The kernel's event loop (and its thread) this component was first displayed from;
    #: None outside a notebook (a served session, a script): changes are then made in place.
    _display_loop: asyncio.AbstractEventLoop | None = None
    _display_thread: int | None = None

    def bind_display_loop(self) -> None:
        """Remember the running loop of this thread as the one that shows this component
        (the first display in a notebook kernel wins; never brokerkit's runtime loop)."""
        if self._display_loop is not None or not in_notebook():
            return
        from .. import runtime

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread: nothing to bind to
            return
        if runtime.in_runtime():
            return
        self._display_loop, self._display_thread = loop, threading.get_ident()

    def _off_display_loop(self) -> asyncio.AbstractEventLoop | None:
        """The display loop when the caller is on another thread (and that loop runs)."""
        loop = self._display_loop
        if loop is None or threading.get_ident() == self._display_thread \
                or not loop.is_running():
            return None
        return loop

    def on_display_loop(self, fn: Callable[..., T], *args: Any) -> T | None:
        """`fn(*args)` now when called on the display loop's thread (or the component is
        shown by no notebook), returning its result; else queued on that loop, in call order,
        returning None."""
        loop = self._off_display_loop()
        if loop is None:
            return fn(*args)
        loop.call_soon_threadsafe(fn, *args)
        return None

    async def run_on_display_loop(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await `fn(*args)` on the display loop (in place when already there): what a
        widget's handler does when the front end's event arrives on another thread."""
        loop = self._off_display_loop()
        if loop is None:
            return await fn(*args)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
            _awaited(fn, *args), loop))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        import panel as pn

        ensure_extension()
        self.bind_display_loop()
        out = super()._repr_mimebundle_(include, exclude)  # type: ignore[misc]
        if pn.config.comms in ("vscode", "ipywidgets"):  # an ipywidget renders it instead
            return out
        return with_fallback(out, type(self).__name__)


async def _awaited(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await fn(*args)


def with_fallback(out: Any, name: str) -> Any:
    """Panel's `(data, metadata)` for a cell, with `fallback_html(name)` before its HTML (and
    the script that removes it once Bokeh runs) and a plain-text form."""
    if not isinstance(out, tuple) or len(out) != 2 or not isinstance(out[0], dict):
        return out
    data, meta = out
    data = dict(data)
    data.setdefault("text/plain", f"<brokerkit {name}: a live Panel view; open the notebook "
                                  "in JupyterLab, Notebook 7 or VS Code to see it>")
    if "text/html" in data:
        ident = f"brokerkit-fallback-{uuid.uuid4().hex}"
        note = fallback_html(name).replace('<div class="brokerkit-fallback"',
                                           f'<div id="{ident}" class="brokerkit-fallback"', 1)
        data["text/html"] = note + data["text/html"] + _HIDE_FALLBACK.substitute(
            ident=ident, name=html.escape(name))
    return data, meta


#: Run with the view's own scripts: once Bokeh has loaded (it loads asynchronously; waited for
#: up to 15 s) the note goes; if it never does (the extension's output was cleared or
#: blocked), the note says what to run.
_HIDE_FALLBACK = string.Template(
    "<script>(function(){var n=0;function check(){"
    "var e=document.getElementById('$ident');if(!e){return;}"
    "if(window.Bokeh&&window.Bokeh.embed){e.remove();return;}"
    "if(++n<150){setTimeout(check,100);return;}"
    "e.innerHTML='<b>$name</b> did not render: Bokeh JavaScript did not load in this page. '+"
    "'Run <code>import brokerkit.ui; brokerkit.ui.extension()</code> in a cell, then '+"
    "'display the view again.';}check();})();</script>")


def local_dist_url() -> str:
    """Where a served page finds Panel's dist files (`static/extensions/panel/`, under the
    app's prefix): Panel's own choice for a page, made before the page renders."""
    from panel.io.resources import get_dist_path

    return get_dist_path(cdn=False)


def prepare_served_document() -> None:
    """Call at the start of a served session (before building its components): every
    stylesheet of the session is pointed at the server's own copy as it is made, not at the
    CDN first (Panel otherwise decides when the page renders, after the session is built)."""
    import panel as pn

    keep_stylesheets_local()
    doc = pn.state.curdoc
    if doc is not None:
        doc._template_variables.setdefault("dist_url", local_dist_url())


def keep_stylesheets_local() -> None:
    """Make Panel never send a stylesheet URL on its CDN: such a URL becomes a `data:` URL of
    Panel's own copy of the file (installed with Panel). Idempotent; process-wide."""
    global _patched
    if _patched:
        return
    import panel.io.resources as resources
    import panel.reactive as reactive
    import panel.theme.base as theme

    original = resources.patch_stylesheet
    if getattr(original, "_brokerkit", False):
        _patched = True
        return

    @functools.wraps(original)
    def patch_stylesheet(stylesheet: Any, dist_url: str) -> None:
        original(stylesheet, dist_url)
        try:
            url = stylesheet.url
        except Exception:  # not an imported stylesheet
            return
        local = _data_url(url)
        if local is not None:
            stylesheet.url = local

    patch_stylesheet._brokerkit = True  # type: ignore[attr-defined]
    for module in (resources, reactive, theme):
        if getattr(module, "patch_stylesheet", None) is original:
            module.patch_stylesheet = patch_stylesheet
    _patched = True


def _data_url(url: str) -> str | None:
    """A `data:` URL for a stylesheet URL on Panel's CDN, from Panel's own copy; None for any
    other URL, or a file Panel does not ship."""
    from panel.io.resources import CDN_DIST

    if not isinstance(url, str) or not url.startswith(CDN_DIST):
        return None
    return _css_data_url(url[len(CDN_DIST):].split("?", 1)[0])


@functools.lru_cache(maxsize=128)
def _css_data_url(relative: str) -> str | None:
    """The file of Panel's dist directory at `relative`, as a `data:` URL, with the small
    images its relative `url(...)`s name (the loading spinners' SVGs) inlined too."""
    from panel.io.resources import DIST_DIR

    dist = Path(DIST_DIR).resolve()
    path = (dist / relative).resolve()
    if not path.is_file() or dist not in path.parents:
        return None
    css = path.read_text(encoding="utf-8")

    def inline(match: re.Match[str]) -> str:
        ref = match.group(2)
        if ":" in ref or ref.startswith(("/", "#")):  # data:, http:, absolute: left alone
            return match.group(0)
        target = (path.parent / ref.split("?", 1)[0]).resolve()
        mime = mimetypes.guess_type(target.name)[0] or ""
        if (not mime.startswith("image/") or not target.is_file()
                or dist not in target.parents or target.stat().st_size > _MAX_INLINED):
            return match.group(0)  # web fonts: left out (never fetched from a data: sheet)
        data = base64.b64encode(target.read_bytes()).decode("ascii")
        return f"url('data:{mime};base64,{data}')"

    css = _CSS_URL.sub(inline, css)
    return "data:text/css;base64," + base64.b64encode(css.encode("utf-8")).decode("ascii")


#: The largest image (bytes) a stylesheet's `url(...)` has inlined (the spinners are ~1 KB).
_MAX_INLINED = 32_768
_CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)""")
