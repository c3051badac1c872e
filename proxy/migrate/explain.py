"""``sso-proxy explain``: the decision the server would make for one callback, and why; sends nothing.

The callback is given as a URL plus a form body (``-d`` and ``--data-urlencode`` as curl reads them,
or ``--data-file``), or as a saved raw HTTP request (``--request``). The exit status says where it
goes, so a CI job can assert decisions: :data:`EXIT_WORKOS`, :data:`EXIT_AUTH0`, :data:`EXIT_INPUT`.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Callable, NamedTuple, TextIO
from urllib.parse import quote, urlsplit

from proxy.errors import InputError, RouteMapError

if TYPE_CHECKING:
    from proxy.routing.callback import Callback

EXIT_WORKOS = 0  # redirected to WorkOS
EXIT_AUTH0 = 10  # forwarded to Auth0: mapped legacy, unknown with defaults.unknown auth0, fallback, Auth0-only,
# bound to an Auth0 transaction, Auth0's own state form, kill switch, shadow mode or a connection in shadow, or not a
# callback at all (passed through unchanged)
EXIT_INPUT = 2  # nothing decided: a missing or malformed argument, file or route map (argparse's own status too)
MAX_INPUT_BYTES = 16 * 1024 * 1024  # a saved request or body file; far above any real callback

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 section 5.6.2
_VERSION = re.compile(r"HTTP/\d\.\d")
_EXAMPLE = "POST /login/callback?connection=NAME HTTP/1.1"


class RawRequest(NamedTuple):
    """A saved HTTP/1.1 request, as far as a decision needs it; the body is kept byte for byte."""

    method: str
    target: str
    body: bytes
    form: bool  # Content-Type application/x-www-form-urlencoded


def parse_raw_request(data: bytes, source: str) -> RawRequest:
    """A saved raw HTTP/1.1 request -> its parts; :class:`InputError` says which line is wrong and how.

    One pass over the lines of the head; the body is everything after the first blank line.
    """
    cut = min((i for i in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if i >= 0), default=len(data))
    head = data[:cut]
    body = data[cut:].removeprefix(b"\r\n\r\n" if data[cut : cut + 4] == b"\r\n\r\n" else b"\n\n")
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    first = lines[0].strip()
    if not first:
        where = "empty file" if not data.strip() else "no request line"
        raise InputError(f"{source}:1: {where}; a saved request starts like '{_EXAMPLE}'")
    if first.lower().startswith("curl "):
        raise InputError(
            f"{source}:1: a curl command, not a saved HTTP request; give its URL and -d/--data-urlencode instead"
        )
    words = first.split()
    method = words[0]
    if len(words) not in (2, 3) or not _TOKEN.fullmatch(method):
        raise InputError(f"{source}:1: {_shown(first)} is not a request line like '{_EXAMPLE}'")
    target = words[1]
    if not target.startswith(("/", "http://", "https://")):
        raise InputError(f"{source}:1: request target {_shown(target)} must start with / or http(s)://")
    if len(words) == 3 and not _VERSION.fullmatch(words[2]):
        raise InputError(f"{source}:1: {_shown(words[2])} is not an HTTP version like HTTP/1.1")
    form = False
    for number, line in enumerate(lines[1:], start=2):
        name, colon, value = line.partition(":")
        if not colon or not _TOKEN.fullmatch(name):
            hint = "; is the blank line before the body missing?" if "=" in line and not colon else ""
            raise InputError(f"{source}:{number}: {_shown(line)} is not a header line 'Name: value'{hint}")
        if name.lower() == "content-type":
            form = value.strip().lower().startswith("application/x-www-form-urlencoded")
    return RawRequest(method.upper(), target, body.rstrip(b"\r\n") if form else body, form)


def _shown(text: str, limit: int = 60) -> str:
    """A piece of the input quoted for an error line, cut short (the input may be huge)."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def data_urlencode(arg: str, read: Callable[[str], bytes]) -> bytes:
    """One ``--data-urlencode`` argument, as curl reads it.

    ``content``, ``=content``: the content url-encoded; ``name=content``: the name as given, ``=``,
    the content url-encoded; ``@file``, ``name@file``: the same with the file's bytes. An ``=``
    comes before an ``@`` (``a@b=c`` is the name ``a@b``). Encoded as curl does: every byte but
    ``A-Z a-z 0-9 - . _ ~`` as ``%XX`` (a space is ``%20``, a ``+`` is ``%2B``).
    """
    name, sep, content = arg.partition("=")
    if not sep:
        name, sep, content = arg.partition("@")
        if not sep:
            name, content = "", arg
    value = read(content) if sep == "@" else content.encode()
    encoded = quote(value, safe="").encode("ascii")
    return name.encode() + b"=" + encoded if name else encoded


def read_input(path: str, what: str) -> bytes:
    """A file named on the command line, bounded; :class:`InputError` if it cannot be used."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{what} {path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_INPUT_BYTES:
        raise InputError(f"{what} {path}: larger than {MAX_INPUT_BYTES // (1024 * 1024)} MiB; not a callback")
    return data


def raw_request_cookies(data: bytes) -> str:
    """The Cookie header(s) of a saved raw HTTP request, joined as one header value."""
    cut = min((i for i in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if i >= 0), default=len(data))
    lines = data[:cut].decode("latin-1").replace("\r\n", "\n").split("\n")[1:]
    return "; ".join(line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("cookie:"))


def explain_binding(cb: Callback, cookie: str) -> tuple[frozenset[str], str | None]:
    """What the request's binding cookie says, checked with SSO_PROXY_TRANSACTION_KEYS from the
    environment as the service would: the bound values, and a line for the output (None: no cookie).
    :class:`InputError` for keys the service would refuse (never echoing them)."""
    from proxy.config import SETTINGS
    from proxy.routing.binding import AUTH0_PREFIX, Binder
    from proxy.routing.cookieheader import has_cookie
    from proxy.routing.txcookie import Keys

    headers = [(b"cookie", cookie.encode("latin-1", "replace"))]
    if not has_cookie([header for _, header in headers], AUTH0_PREFIX):
        return frozenset(), None
    raw_keys = os.environ.get("SSO_PROXY_TRANSACTION_KEYS", "").strip()
    if not raw_keys:
        return frozenset(), (
            "a binding cookie is present, but SSO_PROXY_TRANSACTION_KEYS is not set here: it cannot be checked "
            "(set it to the service's keys)"
        )
    parse = next(s.parse for s in SETTINGS if s.env == "SSO_PROXY_TRANSACTION_KEYS")
    try:
        keys = Keys(parse(raw_keys))
    except ValueError as exc:
        raise InputError(f"SSO_PROXY_TRANSACTION_KEYS: {exc}") from exc
    found = Binder(keys).auth0_binding(headers, cb, time.time())
    if found.bound:
        return found.bound, f"bound to an Auth0 transaction (by {', '.join(sorted(found.bound))})"
    return frozenset(), (
        "a binding cookie is present, but it binds none of this callback's state/RelayState/InResponseTo "
        "(another login, used, expired, another key, or altered)"
    )


def explain(
    route_map_path: str,
    url: str,
    body: bytes,
    form: bool,
    out: TextIO,
    err: TextIO,
    method: str,
    cookie: str = "",
) -> int:
    """Print the decision the server would make for this callback (``cookie``: the request's Cookie
    header), and why; return the exit status."""
    from proxy.app import CALLBACK_PATHS
    from proxy.config import load_settings
    from proxy.routing.callback import Callback
    from proxy.routing.decide import decide
    from proxy.routing.routemap import load_routemap

    workos_domain = os.environ.get("WORKOS_CUSTOM_DOMAIN") or None
    try:
        route_map = load_routemap(route_map_path, workos_domain)
    except RouteMapError as exc:
        err.write("\n".join(exc.errors) + "\n")
        return EXIT_INPUT
    parts = urlsplit(url)
    if parts.path not in CALLBACK_PATHS or method not in ("GET", "POST"):
        out.write(
            f"{method} {parts.path or '/'} is not a GET or POST to /login/callback: passed through to Auth0 unchanged\n"
        )
        return EXIT_AUTH0
    # As a browser sends it: anything outside URL characters percent-encoded as UTF-8.
    query = quote(parts.query, safe="&=%+;/:?@!$'()*,~").encode("ascii")
    cb = Callback(query, body, form)
    try:
        bound, binding_line = explain_binding(cb, cookie)
    except InputError as exc:
        err.write(f"sso-proxy explain: {exc}\n")
        return EXIT_INPUT
    from proxy.routing.auth0state import any_auth0_state
    from proxy.routing.callback import transaction_values

    values = transaction_values(cb)
    own_form = any_auth0_state(values) if values else False
    decision = decide(cb, route_map, bound, own_form)
    identity = decision.identity
    conn = route_map.connections.get(identity.connection) if identity.connection else None
    out.write(
        f"route map:      {route_map_path} (sha256 {route_map.sha256[:12]}, mode {route_map.mode}, "
        f"unknown -> {route_map.unknown})\n"
    )
    out.write(f"protocol:       {decision.protocol}\n")
    if conn is not None:
        out.write(f"connection:     {identity.connection} (state {conn.state})\n")
        if conn.strategy:
            moved = " (moved_to_saml: the customer added a SAML relying party)" if conn.moved_to_saml else ""
            out.write(f"strategy:       {conn.strategy}{moved}\n")
        out.write(f"identified by:  {identity.identified_by}" + (f" = {identity.hint}" if identity.hint else "") + "\n")
    else:
        # identify() keeps an unmapped ?connection= value as the hint: it named no connection of the map.
        named = f" (?connection={identity.hint} is not in the route map)" if identity.hint else ""
        out.write(f"connection:     (unknown){named}\n")
        out.write(
            "identified by:  none"
            + (" (SAMLResponse/id_token present but unreadable)" if identity.unparseable else "")
            + "\n"
        )
    if binding_line is not None:
        out.write(f"binding:        {binding_line}\n")
    if values:
        names = "/".join(dict.fromkeys(name for name, _ in values))
        shape = "of the form of Auth0's own transaction state" if own_form else "not of the form of Auth0's own state"
        out.write(f"auth0 state:    {names} {shape}\n")
    out.write(f"decision:       {decision.action}\n")
    if decision.would and conn is not None and conn.state == "shadow" and route_map.mode != "shadow":
        would = f" (connection in shadow: would go to {decision.would}; counted in sso_proxy_shadow_total)"
    elif decision.would:
        would = f" (normal mode would send it to {decision.would})"
    else:
        would = ""
    out.write(f"reason:         {decision.reason}{would}\n")
    if decision.action == "workos":
        if os.environ.get("WORKOS_CUSTOM_DOMAIN") and os.environ.get("WORKOS_CLIENT_ID"):
            from proxy.app import workos_target

            # Only the WorkOS target is shown: any Auth0 setting (or none, or Auth0 off) will do.
            env = {**os.environ, "AUTH0_FALLBACK_ORIGIN": "https://auth0.invalid", "SSO_PROXY_AUTH0_OFF": "false"}
            settings = load_settings(env)
            out.write(f"target:         307 {workos_target(settings, conn, query)}\n")
        else:
            out.write(
                "target:         307 to the WorkOS callback (set WORKOS_CUSTOM_DOMAIN and WORKOS_CLIENT_ID "
                "to see the URL)\n"
            )
        return EXIT_WORKOS
    out.write(
        "target:         forwarded to AUTH0_FALLBACK_ORIGIN"
        + (" with fallback removed" if decision.reason == "fallback" else "")
        + "\n"
    )
    return EXIT_AUTH0
