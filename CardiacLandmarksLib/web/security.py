"""Safety rules of the review server, kept free of trame so they can be tested on their own.

* **Where it listens**: loopback (127.0.0.0/8, ::1, ``localhost``) by default. Any other bind
  address needs an access token (:func:`token_required`).
* **Access token**: random (:func:`new_token`, 32 url-safe bytes), printed at start like
  Jupyter's. With a token, every HTTP request and the websocket must carry it: ``?token=...``
  in the URL (the browser then gets an HttpOnly same-site cookie, so the page's own requests
  and its websocket pass), an ``Authorization: token ...`` header, or that cookie. Anything
  else gets **403** (:func:`token_middleware`).
* **Files**: the app reads and writes only inside the folder it was started on. Names coming
  from the browser go through :func:`resolve_inside`, which refuses absolute paths, ``..``
  and links that lead outside.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
from pathlib import Path

from CardiacLandmarksLib.core.errors import CardiacLandmarksError

logger = logging.getLogger(__name__)

TOKEN_PARAM = "token"
COOKIE_NAME = "cardiac_landmarks_token"


class OutsideRootError(CardiacLandmarksError, PermissionError):
    """A path from the browser that would leave the reviewed folder."""


def new_token() -> str:
    """A fresh random access token (43 url-safe characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    h = (host or "").strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False  # a host name or "" / "0.0.0.0"-like wildcard: treat as reachable from outside


def token_required(host: str, require_token: bool = False) -> bool:
    """Whether the server must check a token: always beyond loopback, on loopback when asked."""
    return bool(require_token) or not is_loopback(host)


def token_matches(candidate: str | None, token: str) -> bool:
    """Constant-time comparison of a presented token with the server's."""
    return bool(candidate) and hmac.compare_digest(str(candidate).encode(), token.encode())


def presented_token(request) -> str | None:
    """The token an aiohttp request carries: query parameter, ``Authorization: token X`` header or cookie."""
    q = request.query.get(TOKEN_PARAM)
    if q:
        return q
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("token "):
        return auth[6:].strip()
    return request.cookies.get(COOKIE_NAME)


def token_middleware(token: str):
    """aiohttp middleware that answers 403 to any request without the right token.

    A request whose query carries the right token gets the cookie set on its response, so the
    page loaded from ``http://host:port/?token=...`` can fetch its scripts and open its
    websocket without the token in every URL.
    """
    from aiohttp import web

    @web.middleware
    async def check_token(request, handler):
        if not token_matches(presented_token(request), token):
            logger.warning("refused %s %s from %s: no valid token", request.method, request.path, request.remote)
            return web.Response(status=403, text="403: this server needs its access token (?token=...)\n")
        response = await handler(request)
        if request.query.get(TOKEN_PARAM) and hasattr(response, "set_cookie"):
            response.set_cookie(COOKIE_NAME, token, httponly=True, samesite="Strict")
        return response

    return check_token


def resolve_inside(root: str | Path, name: str | Path) -> Path:
    """``root / name`` resolved, refusing anything that leaves ``root``.

    Args:
        root: the folder the app was started on.
        name: a relative name from the browser (``"patient001"``, ``"."``).

    Returns:
        The absolute, resolved path (inside ``root`` or ``root`` itself).

    Raises:
        OutsideRootError: ``name`` is absolute, contains ``..``, or resolves (through links)
            outside ``root``.
    """
    root_r = Path(root).expanduser().resolve()
    text = str(name)
    if "\x00" in text:
        raise OutsideRootError("a path with a NUL byte is refused")
    p = Path(text)
    if p.is_absolute() or text.startswith(("/", "\\")) or (len(text) > 1 and text[1] == ":"):
        raise OutsideRootError(f"absolute path {text!r} refused: names are relative to {root_r}")
    if any(part == ".." for part in p.parts) or ".." in text.replace("\\", "/").split("/"):
        raise OutsideRootError(f"path {text!r} refused: '..' is not allowed")
    target = (root_r / p).resolve()
    if target != root_r and root_r not in target.parents:
        raise OutsideRootError(f"path {text!r} leads outside {root_r}")
    return target


def same_origin_middleware():
    """aiohttp middleware refusing (403) a request whose ``Origin`` header names another site.

    Browsers send ``Origin`` with websocket handshakes and cross-site requests; a page from
    another site open in the reader's browser could otherwise drive a loopback server.
    Requests without ``Origin`` (same-origin page loads, command-line clients) pass.
    """
    from urllib.parse import urlsplit

    from aiohttp import web

    @web.middleware
    async def check_origin(request, handler):
        origin = request.headers.get("Origin")
        if origin and origin != "null":
            netloc = urlsplit(origin).netloc.lower()
            if netloc != (request.host or "").lower():
                logger.warning("refused %s %s: Origin %s is not this server (%s)", request.method, request.path,
                               origin, request.host)
                return web.Response(status=403, text="403: cross-origin request refused\n")
        return await handler(request)

    return check_origin
