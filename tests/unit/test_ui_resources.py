"""`brokerkit.ui.resources` and the live views' machinery, in this process (no kernel, no
browser): Panel's CDN stylesheet URLs become local `data:` URLs, a cell that cannot render
says why in words, views say when they last refreshed, and services are built off the loops."""

from __future__ import annotations

import base64
import re
import threading
from pathlib import Path
from typing import Any

import pytest

pn = pytest.importorskip("panel")

from brokerkit import runtime  # noqa: E402
from brokerkit.ui import resources  # noqa: E402
from brokerkit.ui.live import LiveView  # noqa: E402


def _decoded(url: str) -> str:
    assert url.startswith("data:text/css;base64,"), url[:80]
    return base64.b64decode(url.split(",", 1)[1]).decode("utf-8")


def test_panel_cdn_stylesheet_becomes_a_data_url_of_panels_own_copy():
    """Panel names `markdown.css` by CDN URL (panel/pane/markup.py `_stylesheets`) and
    falls back to the CDN for a model outside a page (holoviz/panel#7073)."""
    from bokeh.models import ImportedStyleSheet
    from panel.io.resources import CDN_DIST, DIST_DIR

    resources.keep_stylesheets_local()
    import panel.reactive

    sheet = ImportedStyleSheet(url=f"{CDN_DIST}css/markdown.css")
    panel.reactive.patch_stylesheet(sheet, CDN_DIST)  # what Panel does for a detached model
    assert _decoded(sheet.url) == (Path(DIST_DIR) / "css" / "markdown.css").read_text("utf-8")
    local = ImportedStyleSheet(url="static/extensions/panel/css/markdown.css")
    panel.reactive.patch_stylesheet(local, "static/extensions/panel/")  # a served page: kept
    assert local.url.startswith("static/extensions/panel/css/markdown.css")


def test_loading_css_spinners_are_inlined_and_no_relative_url_is_left_to_fetch():
    css = _decoded(resources._css_data_url("css/loading.css"))
    refs = re.findall(r"url\(\s*['\"]?([^'\")]+)", css)
    assert refs and all(r.startswith("data:image/svg+xml;base64,") for r in refs), refs


def test_a_file_outside_panels_dist_or_missing_is_never_inlined():
    assert resources._css_data_url("../../__init__.py") is None
    assert resources._css_data_url("css/no-such-file.css") is None
    assert resources._data_url("https://example.org/x.css") is None


def test_extension_loads_tabulator_with_resources_inline():
    """`pn.config.inline`: "Whether to inline JS and CSS resources"
    (https://panel.holoviz.org/api/config.html)."""
    old = pn.config.inline
    try:
        resources.extension()
        assert pn.config.inline is True
        assert "tabulator" in pn.extension._loaded_extensions
        assert set(resources.EXTENSIONS) <= set(pn.extension._loaded_extensions)
    finally:
        pn.config.inline = old


def test_a_cell_that_cannot_render_says_what_to_install_in_words():
    data, meta = resources.with_fallback(
        ({"text/html": "<div>view</div>", "application/vnd.holoviews_exec.v0+json": ""},
         {"x": 1}), "BlotterView")
    html = data["text/html"]
    assert html.index("brokerkit-fallback") < html.index("<div>view</div>")
    assert "pip install 'brokerkit[notebooks]'" in html and "BlotterView" in html
    assert "window.Bokeh" in html  # the note goes once Bokeh runs
    assert "BlotterView" in data["text/plain"] and meta == {"x": 1}
    assert resources.with_fallback(None, "X") is None  # Panel's "extension not loaded"


class _Source:
    """A service whose creation is recorded: which thread built it."""


class _View(LiveView):
    sources = ("thing",)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.built_in: list[str] = []
        self._thing: _Source | None = None

    @property
    def thing(self) -> _Source:
        if self._thing is None:
            self.built_in.append(threading.current_thread().name)
            self._thing = _Source()
        return self._thing

    async def fetch_async(self) -> str:
        return type(self.thing).__name__

    def show(self, data: Any) -> None:
        self.shown = data

    def layout(self) -> Any:
        return pn.Column(self._refreshed_pane)


def test_refresh_async_on_the_runtime_loop_builds_services_in_a_worker_thread():
    view = _View(refresh_ms=0)
    assert runtime.run(view.refresh_async())
    assert view.built_in and view.built_in[0] != "brokerkit-runtime"
    assert view.shown == "_Source"


def test_refresh_builds_services_in_the_callers_thread():
    view = _View(refresh_ms=0)
    assert view.refresh()
    assert view.built_in == [threading.current_thread().name]


def test_a_refreshed_view_says_when_in_utc():
    view = _View(refresh_ms=0)
    assert view._refreshed_pane.object == ""
    assert view.refresh()
    assert view._refreshed_pane.object == \
        f"last refreshed {view.updated_at:%H:%M:%S} UTC"
    assert re.fullmatch(r"last refreshed \d\d:\d\d:\d\d UTC", view._refreshed_pane.object)


def test_outside_a_notebook_no_periodic_refresh_is_started():
    view = _View(refresh_ms=1000)
    view.__panel__()  # a plain script: loads once, nothing left running
    assert view._loaded and view._periodic is None
    assert not view.start_notebook_refresh()
