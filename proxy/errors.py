"""The small exception tree of sso-proxy; errors become responses or exit lines in one place."""

from __future__ import annotations


class ProxyError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(ProxyError):
    """A setting is missing or malformed; the message names it."""


class InputError(ProxyError):
    """A file or argument given to a command cannot be used; the message locates what is wrong."""


class RouteMapError(ProxyError):
    """A route map failed validation; carries every located error."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: {len(errors)} error(s):\n" + "\n".join(errors))


class UpstreamError(ProxyError):
    """Forwarding to Auth0 failed before a response could be returned."""

    kind = "protocol"
    status = 502


class UpstreamConnectError(UpstreamError):
    kind = "connect"


class UpstreamTimeout(UpstreamError):
    kind = "timeout"
    status = 504


class UpstreamReset(UpstreamError):
    kind = "reset"
