"""Who may use a server: anyone on this machine when it listens on loopback only; beyond
loopback, only a browser that shows the access token (in the address once, then in a cookie)."""
from __future__ import annotations

import hmac
import ipaddress
import os
import secrets

COOKIE = "totalfm_token"
TOKEN_ENV = "TOTALFM_SERVE_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen_token(host: str, token: str | None) -> str | None:
    """The token the server will ask for (None: none asked), or ValueError with how to give one."""
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(host):
        raise ValueError(f"listening on {host} (beyond this machine) needs an access token: add --token TOKEN "
                         f"or set {TOKEN_ENV} (for example: --token {secrets.token_urlsafe(16)}); readers then "
                         "open the address with ?token=TOKEN once")
    if token is not None and len(token) < 12:
        raise ValueError("the access token is too short: use at least 12 characters")
    return token


def new_token() -> str:
    return secrets.token_urlsafe(24)


def refusal() -> str:
    return ("This TotalFM server needs its access token. Open the address that `totalfm serve` printed, "
            "which ends in ?token=..., or ask whoever started the server for it.")


def middleware(token: str):
    """aiohttp middleware: the token from ``?token=`` (kept in an HttpOnly cookie) or the cookie."""
    from aiohttp import web

    expected = token.encode()

    def shown(value: str | None) -> bool:
        return value is not None and hmac.compare_digest(value.encode(), expected)

    @web.middleware
    async def check(request, handler):
        from_query = request.query.get("token")
        if not (shown(from_query) or shown(request.cookies.get(COOKIE))):
            return web.Response(status=403, text=refusal())
        response = await handler(request)
        if shown(from_query) and not request.cookies.get(COOKIE) and not getattr(response, "prepared", True):
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        return response

    return check
