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


class StartupError(ProxyError):
    """The service cannot start (port in use, a missing safety guard); the message is one line."""


class UpstreamError(ProxyError):
    """Forwarding to Auth0 failed; ``started`` when the response had already begun (then ``status`` is the
    one sent, and the connection is closed instead of answered)."""

    kind = "protocol"
    status = 502
    started = False


class UpstreamConnectError(UpstreamError):
    kind = "connect"


class UpstreamTimeout(UpstreamError):
    kind = "timeout"
    status = 504


class UpstreamReset(UpstreamError):
    kind = "reset"


class UpstreamAborted(UpstreamReset):
    """Auth0's answer broke off after its status and headers were passed on."""

    started = True

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class RequestUnforwardable(UpstreamError):
    """The request cannot be sent to Auth0 byte for byte (a header value that is not UTF-8); never sent."""

    kind = "refused"
    status = 400
