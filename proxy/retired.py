"""Auth0 switched off (``SSO_PROXY_AUTH0_OFF=true``, no ``AUTH0_FALLBACK_ORIGIN``): what the proxy answers.

The end of the migration (WorkOS's guide: "turn off your Auth0 tenant entirely ... the proxy
continues to route any remaining traffic"). Every callback goes to WorkOS; nothing is forwarded.

- A route map that still sends something to Auth0 (a ``legacy`` connection, ``mode: auth0`` or
  ``shadow``, ``unknown: auth0``) is refused at start and on reload, naming each (:func:`map_errors`):
  it would strand those logins.
- A callback that would still go to Auth0 (``fallback=auth0``: WorkOS could not complete it) gets a
  clear page ("this sign-in could not be completed; contact your administrator", 403), never a 5xx
  "temporarily unavailable": nothing is temporarily down, so nothing should be retried.
- Every other path (``/authorize``, ``/u/login``, ``/oauth/token`` ...) gets a 404 page, or a 302 to
  the configured ``SSO_PROXY_RETIRED_URL``, counted by path under a bounded label set
  (:func:`path_label`) so the stragglers (apps still sending users to Auth0) are visible.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from proxy.routing.routemap import RouteMap

Send = Callable[[dict[str, Any]], Awaitable[None]]

# Auth0's public endpoints on a custom domain (Auth0 Authentication API reference), as path labels.
# Exact paths first, then prefixes ending in "/"; anything else is "other".
KNOWN_PATHS = (
    "/authorize",
    "/login",
    "/oauth/token",
    "/oauth/revoke",
    "/userinfo",
    "/v2/logout",
    "/oidc/logout",
    "/continue",
    "/favicon.ico",
    "/.well-known/openid-configuration",
    "/.well-known/jwks.json",
)
KNOWN_PREFIXES = (
    "/u/",
    "/samlp/",
    "/wsfed/",
    "/co/",
    "/passwordless/",
    "/dbconnections/",
    "/mfa/",
    "/api/",
    "/oauth/",
    "/.well-known/",
)
OTHER = "other"
NOT_COMPLETED_STATUS = 403


def path_label(path: str) -> str:
    """A bounded metric label for a request path: a known Auth0 path or prefix, else ``other``."""
    trimmed = path.rstrip("/") or "/"
    if trimmed in KNOWN_PATHS:
        return trimmed
    for prefix in KNOWN_PREFIXES:
        if path.startswith(prefix):
            return prefix + "*"
    return OTHER


def map_errors(route_map: RouteMap, source: str) -> list[str]:
    """Why ``route_map`` cannot be served with Auth0 switched off (empty: it can), naming each item."""
    errors: list[str] = []
    if route_map.mode != "normal":
        errors.append(f"{source}: defaults.mode is {route_map.mode}, which sends callbacks to Auth0")
    if route_map.unknown == "auth0":
        errors.append(f"{source}: defaults.unknown is auth0: unidentified callbacks would have nowhere to go")
    # A connection in shadow sends its callbacks to Auth0 too.
    legacy = sorted(name for name, conn in route_map.connections.items() if conn.state != "workos")
    if legacy:
        errors.append(
            f"{source}: {len(legacy)} connection(s) still legacy or shadow (on Auth0): {', '.join(legacy)}; "
            "set them to workos (`sso-proxy routes set ... workos`) or keep AUTH0_FALLBACK_ORIGIN"
        )
    if errors:
        errors.append(f"{source}: refused because Auth0 is switched off (SSO_PROXY_AUTH0_OFF=true)")
    return errors


def _page(title: str, text: str) -> bytes:
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{title}</title></head>"
        f"<body><h1>{title}</h1><p>{text}</p></body></html>"
    ).encode()


NOT_COMPLETED = _page(
    "This sign-in could not be completed",
    "This sign-in could not be completed. Please contact your administrator.",
)
NOT_SERVED = _page("Not found", "This sign-in address is no longer in use.")


async def _send(send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None) -> int:
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status


async def answer_callback(send: Send) -> int:
    """A callback that only Auth0 could have completed."""
    return await _send(send, NOT_COMPLETED_STATUS, NOT_COMPLETED)


async def answer_path(send: Send, retired_url: str) -> int:
    """Any other path: a 404 page, or a 302 to the configured URL."""
    if retired_url:
        return await _send(send, 302, b"", [(b"location", retired_url.encode("latin-1"))])
    return await _send(send, 404, NOT_SERVED)
