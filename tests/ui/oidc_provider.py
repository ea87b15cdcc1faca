"""A tiny OAuth 2 / OpenID Connect provider on a loopback port, for sign-in tests offline.

The authorization-code flow, as a real provider runs it: `GET /authorize` shows a sign-in form
(one field: the e-mail), `POST /authorize` redirects back to the client's `redirect_uri` with a
one-time code and the client's `state`; `POST /token` trades the code for an access token
(checking the client id and secret and the redirect URI); `GET /userinfo` answers the bearer
of that token with the user's claims. Every request is recorded in `requests`.
"""

from __future__ import annotations

import asyncio
import html
import secrets
import socket
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

__all__ = ["OIDCProvider"]

_FORM = """<!doctype html><html><head><title>Test IdP sign-in</title></head><body>
<h1>Test IdP</h1><form method="post" action="/authorize">
{hidden}<label>E-mail <input name="email" id="email" autofocus></label>
<button type="submit" id="signin">Sign in</button></form></body></html>"""


@dataclass
class OIDCProvider:
    """The provider, for one client (`client_id`, `client_secret`)."""

    client_id: str
    client_secret: str
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    _codes: dict[str, tuple[str, str]] = field(default_factory=dict)  # code -> (email, uri)
    _tokens: dict[str, str] = field(default_factory=dict)  # access token -> email
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def extra_params(self) -> dict[str, str]:
        """Panel's generic-provider settings pointing at this provider."""
        return {"AUTHORIZE_URL": f"{self.url}/authorize", "TOKEN_URL": f"{self.url}/token",
                "USER_URL": f"{self.url}/userinfo", "USER_KEY": "email"}

    # -- handlers --------------------------------------------------------------------------
    async def _authorize_form(self, request: web.Request) -> web.Response:
        q = dict(request.query)
        self.requests.append(("authorize", q))
        if q.get("client_id") != self.client_id or q.get("response_type") != "code":
            return web.Response(status=400, text="invalid_request")
        keep = {k: q.get(k, "") for k in ("redirect_uri", "state")}
        hidden = "".join(f'<input type="hidden" name="{k}" value="{html.escape(v)}">'
                         for k, v in keep.items())
        return web.Response(text=_FORM.format(hidden=hidden), content_type="text/html")

    async def _authorize_post(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append(("signin", {k: str(v) for k, v in form.items()}))
        code = secrets.token_urlsafe(16)
        self._codes[code] = (str(form["email"]), str(form["redirect_uri"]))
        query = urlencode({"code": code, "state": form["state"]})
        raise web.HTTPFound(f"{form['redirect_uri']}?{query}")

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append(("token", form))
        if (form.get("client_id") != self.client_id
                or form.get("client_secret") != self.client_secret):
            return web.json_response({"error": "invalid_client"}, status=401)
        grant = self._codes.pop(form.get("code", ""), None)
        if (form.get("grant_type") != "authorization_code" or grant is None
                or grant[1] != form.get("redirect_uri")):
            return web.json_response({"error": "invalid_grant"}, status=400)
        token = secrets.token_urlsafe(24)
        self._tokens[token] = grant[0]
        return web.json_response({"access_token": token, "token_type": "Bearer",
                                  "expires_in": 3600})

    async def _userinfo(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        self.requests.append(("userinfo", {"authorization": auth[:7]}))
        email = self._tokens.get(auth.removeprefix("Bearer ").strip())
        if email is None:
            return web.json_response({"error": "invalid_token"}, status=401)
        return web.json_response({"sub": email, "email": email,
                                  "name": email.split("@")[0].title(),
                                  "preferred_username": email.split("@")[0]})

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> OIDCProvider:
        """Serve in a background thread; returns self once it is listening."""
        if not self.port:
            with socket.socket() as s:
                s.bind((self.host, 0))
                self.port = s.getsockname()[1]
        app = web.Application()
        app.router.add_get("/authorize", self._authorize_form)
        app.router.add_post("/authorize", self._authorize_post)
        app.router.add_post("/token", self._token)
        app.router.add_get("/userinfo", self._userinfo)
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def run() -> None:
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            await web.TCPSite(self._runner, self.host, self.port).start()
            ready.set()

        def main() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(run())
            self._loop.run_forever()

        self._thread = threading.Thread(target=main, name="test-oidc", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the test OIDC provider did not start")
        return self

    def stop(self) -> None:
        if self._loop is None or self._runner is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        fut.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> OIDCProvider:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
