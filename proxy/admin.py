"""Who may talk to the operations listener: Host, cross-site and token checks.

The operations listener binds to loopback or a pod address and has no TLS; what it must not be is
reachable *through a browser*. Two browser attacks reach such a listener from any web page:

- **Cross-site requests.** A page can POST to ``http://127.0.0.1:9090/-/reload`` with a "simple"
  request (``text/plain``, form types, no preflight). Refused: a request whose ``Origin`` is not
  the listener itself, whose ``Sec-Fetch-Site`` is ``cross-site`` or ``same-site``, or (for state
  changes) whose body type is anything but none or ``application/json`` — which a browser cannot
  send cross-site without a CORS preflight this listener never answers.
- **DNS rebinding.** A name the attacker controls is re-pointed at 127.0.0.1, so the page's
  requests become same-origin; the browser still sends the attacker's name as ``Host``. Refused:
  ``Host`` must be an IP literal (a rebinding attack cannot make a browser send one for a name),
  ``localhost``, the listener's own bind address, or a name in ``SSO_PROXY_ADMIN_HOSTS``. Prometheus
  scraping a pod and kubelet probes send the pod IP and port; a scrape through a Service name needs
  that name listed.

State-changing endpoints (``POST /-/reload``) also need ``Authorization: Bearer <SSO_PROXY_ADMIN_TOKEN>``,
compared in constant time; with no token configured they are off (403, saying so). SIGHUP and the
file watcher reload without a token: they need access to the process or the file already.

:func:`check` is the pure core, tested by tables; :class:`AdminGuard` is the ASGI wrapper.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, NamedTuple

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

SAFE_METHODS = frozenset(("GET", "HEAD"))
MIN_TOKEN_LENGTH = 32


@dataclass(frozen=True, slots=True)
class AdminPolicy:
    """What the operations listener accepts: the token (empty: state changes off) and host names."""

    token: str = ""
    hosts: tuple[str, ...] = ()  # extra names allowed in Host (host or host:port), lower case
    bind_host: str = "127.0.0.1"


class Refusal(NamedTuple):
    status: int
    reason: str  # a metric label: host, cross_site, content_type, token, off
    message: str


def _split_host(value: str) -> tuple[str, str | None]:
    """``host[:port]`` or ``[v6][:port]`` -> (host, port or None); no validation of the port."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return value, None
        rest = value[end + 1 :]
        return value[1:end], rest[1:] if rest.startswith(":") else None
    host, sep, port = value.rpartition(":")
    if not sep or ":" in host:  # no port, or a bare IPv6 literal
        return value, None
    return host, port


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_allowed(host_header: str | None, policy: AdminPolicy) -> bool:
    """Whether ``Host`` names this listener in a way no DNS-rebinding page can forge."""
    if host_header is None:
        return True  # HTTP/1.0 without Host: not a browser
    value = host_header.strip(" \t").lower()
    if not value or any(not "!" <= c <= "~" for c in value):
        return False
    host, port = _split_host(value)
    if port is not None and not (port.isdigit() and len(port) <= 5):
        return False
    host = host.rstrip(".")
    if _is_ip(host) or host == "localhost" or host == policy.bind_host.lower():
        return True
    return any(value == allowed or host == allowed for allowed in policy.hosts)


def _origin_matches(origin: str, host_header: str | None) -> bool:
    """``Origin: http://<Host>``: the page was served by this listener itself."""
    if host_header is None:
        return False
    return origin.lower() == f"http://{host_header.strip().lower()}"


def check(
    method: str,
    path: str,
    headers: dict[str, str],
    policy: AdminPolicy,
    state_changing: bool,
) -> Refusal | None:
    """None when the request may proceed, else why not. ``headers``: lower-case names, latin-1 values.

    Order matters only for which reason is reported; every check must pass.
    """
    if not host_allowed(headers.get("host"), policy):
        return Refusal(403, "host", "unexpected Host; use an IP address, localhost, or a name in SSO_PROXY_ADMIN_HOSTS")
    origin = headers.get("origin")
    if origin is not None and not _origin_matches(origin, headers.get("host")):
        return Refusal(403, "cross_site", "cross-origin requests are not accepted")
    if headers.get("sec-fetch-site", "none").lower() not in ("none", "same-origin"):
        return Refusal(403, "cross_site", "cross-site requests are not accepted")
    if not state_changing:
        return None
    content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in ("", "application/json"):
        return Refusal(415, "content_type", "send no body, or application/json")
    if not policy.token:
        return Refusal(
            403,
            "off",
            f"{method} {path} is off: set SSO_PROXY_ADMIN_TOKEN to enable it "
            "(SIGHUP and the file watcher reload without it)",
        )
    scheme, _, given = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), policy.token.encode()):
        return Refusal(401, "token", "Authorization: Bearer <SSO_PROXY_ADMIN_TOKEN> required")
    return None


def parse_token(value: str) -> str:
    """``SSO_PROXY_ADMIN_TOKEN``: at least 32 printable ASCII characters, no spaces (e.g. ``openssl rand -hex 32``)."""
    value = value.strip()
    if not value:
        return ""
    if len(value) < MIN_TOKEN_LENGTH:
        raise ValueError(f"must be at least {MIN_TOKEN_LENGTH} characters (e.g. openssl rand -hex 32)")
    if any(not "!" <= c <= "~" for c in value):
        raise ValueError("must be printable ASCII without spaces")
    return value


class AdminGuard:
    """ASGI wrapper: every request to the operations app passes :func:`check` first."""

    def __init__(
        self,
        app: Any,  # an ASGI app (Starlette's own signature is wider than ASGIApp)
        policy: AdminPolicy,
        state_changing: Callable[[str, str], bool],
        on_refusal: Callable[[Refusal], None] | None = None,
    ) -> None:
        self.app = app
        self.policy = policy
        self.state_changing = state_changing
        self.on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers: dict[str, str] = {}
        hosts = 0
        for name, value in scope["headers"]:
            key = name.decode("latin-1").lower()
            hosts += key == "host"
            headers.setdefault(key, value.decode("latin-1"))
        method, path = scope["method"], scope["path"]
        refusal = (
            Refusal(400, "host", "more than one Host header")
            if hosts > 1
            else check(method, path, headers, self.policy, self.state_changing(method, path))
        )
        if refusal is None:
            await self.app(scope, receive, send)
            return
        if self.on_refusal is not None:
            self.on_refusal(refusal)
        body = (json.dumps({"error": refusal.message}) + "\n").encode()
        response_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        if refusal.status == 401:
            response_headers.append((b"www-authenticate", b'Bearer realm="sso-proxy operations"'))
        await send({"type": "http.response.start", "status": refusal.status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body if method != "HEAD" else b""})
