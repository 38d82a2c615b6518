"""Who may talk to `mltag serve`: checked on every request before any route runs.

- Host: on a loopback bind the Host header must name localhost / 127.0.0.1 / ::1 with the port: a
  page on another site cannot reach the app through a DNS name it controls (DNS rebinding). On any
  other bind the machine is reached by whatever name the network gives it, and the token guards it.
- Token: a random token made at start. On a loopback bind (the default) pages are open to this
  machine's browser and the token is embedded in them; on any other host every request needs it (in
  the URL printed at start, as Jupyter does, then a cookie). Every request that changes anything
  needs it in the X-Mltag-Token header, on loopback too: a form or script on another site has no
  way to read it.
- Origin: a request that changes anything must come from the app's own origin (Origin header, else
  Referer), never from another site's page.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_HEADER = "x-mltag-token"
TOKEN_COOKIE = "mltag_token"
SAFE_METHODS = frozenset({"GET", "HEAD"})
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def new_token() -> str:
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


class Guard:
    """ASGI middleware: Host, token and origin checks (see the module docstring)."""

    def __init__(self, app: ASGIApp, host: str, port: int, token: str) -> None:
        self.app, self.token = app, token
        self.loopback = is_loopback(host)
        # the Host headers a loopback bind answers (a browser leaves out port 80)
        self.hosts = {f"{n}:{port}" for n in LOOPBACK_NAMES} | (set(LOOPBACK_NAMES) if port == 80 else set())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        problem = self._check(scope, headers)
        if problem is not None:
            status, text = problem
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                }
            )
            await send({"type": "http.response.body", "body": text.encode()})
            return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope, headers: Headers) -> tuple[int, str] | None:
        host = headers.get("host", "")
        if self.loopback and host not in self.hosts:
            return 421, f"mltag serve does not answer for the host {host!r}: open the URL it printed"
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = headers.get(TOKEN_HEADER) or (query.get("token") or [None])[0] or _cookie(headers, TOKEN_COOKIE)
        if not self.loopback and not _same(given, self.token):
            return 403, "this mltag serve needs its token: open the URL with ?token=... that it printed"
        if scope["method"] not in SAFE_METHODS:
            if not _same(headers.get(TOKEN_HEADER), self.token):
                return 403, "a change needs the page's token (X-Mltag-Token): reload the page"
            origin = headers.get("origin") or _origin_of(headers.get("referer"))
            if origin is None or urlsplit(origin).netloc != host:
                return 403, f"a change must come from this app's own page, not from {origin!r}"
        return None


def _cookie(headers: Headers, name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _origin_of(referer: str | None) -> str | None:
    if not referer:
        return None
    parts = urlsplit(referer)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None
