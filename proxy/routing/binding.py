"""Binding logins to whoever started them: the request path's use of the binding cookie.

The callback path decides by connection, but Auth0 (and WorkOS) refuse a ``state`` they did not
issue, so a login must come back to whoever started it. Every login Auth0 starts sends the browser
to the identity provider through a response this proxy passes on (:mod:`proxy.routing.logins` says which);
when it does, :class:`PassthroughHook` adds a cookie of that login's own holding an HMAC of its
``state`` / ``RelayState`` (and a SAML AuthnRequest's ``ID``, which the IdP echoes as
``InResponseTo``). One cookie per login, because the browser sends these (``Path=/login/callback``)
only to the callback: a login starting cannot see the others in flight, so it must not replace
them. On ``/login/callback``, :meth:`Binder.auth0_binding` says whether a value the callback carries
has its MAC in one of them: then Auth0 started it, and that cookie is deleted. Nothing is stored
server-side: any replica with the same keys decides. The callbacks this proxy itself sent to WorkOS
are marked in one cookie of records (set and read on ``/login/callback``, so it is re-issued with
one record more or less), so a ``fallback=auth0`` can be told apart as solicited. The formats are
:mod:`proxy.routing.txcookie`'s (the purposes below name their versions).

Everything here is pure (the keys and the clock are passed in) and never raises on bad input.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, NamedTuple
from urllib.parse import unquote_to_bytes

from proxy.routing.callback import Callback, callback_digest, in_response_to, saml_document, transaction_values
from proxy.routing.cookieheader import cookie_lines, delete_cookie, set_cookie
from proxy.routing.logins import (
    MAX_PAGE_BYTES,
    Login,
    decode_page,
    header_value,
    inspect_page,
    inspect_response,
    may_be_post_page,
)
from proxy.routing.txcookie import (
    Keys,
    add_record,
    cookie_header,
    copies,
    encoded,
    find_copy,
    find_listed_login,
    find_login_by_name,
    list_cookie,
    listed_logins,
    live,
    login_cookie,
    read_payload,
    verify,
    with_login,
)

# Cookie names. The binding cookies are not __Host- prefixed: that prefix requires Path=/, and they
# ride only on the callback. The list is on every path, so it is: no sibling domain can plant one.
AUTH0_COOKIE = "sso_proxy_tx_"  # logins Auth0 started: one cookie per login, named this and an id
AUTH0_PREFIX = AUTH0_COOKIE.encode("ascii")
LIST_COOKIE = "__Host-sso_proxy_logins"  # the ids of the newest logins in flight (bounds the login cookies)
_LIST_KEY = LIST_COOKIE.encode("ascii") + b"="
WORKOS_COOKIE = "sso_proxy_wx"  # callbacks this proxy sent to WorkOS (a fallback=auth0 is then solicited)

# MAC domain separation: a MAC made for one purpose never verifies for another. The version is the
# cookie format's: a MAC of an older format matches nothing (as with another key).
AUTH0_PURPOSE = b"sso-proxy auth0 transaction v3"
WORKOS_PURPOSE = b"sso-proxy workos redirect v2"

WORKOS_TTL = 120  # a WorkOS round trip takes seconds
_OWN_HOSTS_MAX = 64


def host_name(raw: bytes) -> bytes:
    """A Host value compared as a name: lowercased, without its port (``[v6]`` keeps its brackets)."""
    host = raw.strip().lower()
    if host.startswith(b"["):
        end = host.find(b"]")
        return host[: end + 1] if end > 0 else host
    return host.partition(b":")[0]


def public_names(hosts: Iterable[str]) -> frozenset[bytes]:
    """``SSO_PROXY_PUBLIC_HOST`` as the names a request's Host is looked up in."""
    return frozenset(host_name(host.encode("latin-1")) for host in hosts)


class CallbackBinding(NamedTuple):
    """What the cookies say about one callback."""

    bound: frozenset[str]  # which of state / RelayState / InResponseTo are bound to an Auth0 transaction
    cookie: bytes = b""  # the name of the login cookie that bound it (deleted when the callback is forwarded)


NOT_BOUND = CallbackBinding(frozenset())
_BOUND = {name: frozenset((name,)) for name in ("state", "RelayState", "InResponseTo")}


@dataclass(frozen=True, slots=True)
class Binder:
    """The binding settings in force: keys, lifetime, this service's own hosts (besides the request's Host)."""

    keys: Keys
    ttl: int = 600
    public_hosts: frozenset[str] = frozenset()
    # Until then (Unix time), login cookies of the previous format (3, no tag) are still read by
    # name: the service sets it to its start plus ``ttl``, so logins in flight across a deploy keep
    # their binding (see ``txcookie``, "one cookie per login").
    legacy_until: float = 0.0
    # Host header -> own hosts: one set per Host seen, not one per response. Bounded (cleared when
    # full), since the Host header is the client's.
    _own: dict[bytes, frozenset[str]] = field(default_factory=dict, repr=False, compare=False)

    def own_hosts(self, request_headers: Iterable[tuple[bytes, bytes]]) -> frozenset[str]:
        """Hosts whose /login/callback is this service's. The request's Host is one only when no
        public host is configured or it names one of them (a stranger's Host never
        makes a redirect to it look like a login this service must bind)."""
        raw = header_value(request_headers, b"host")
        if raw is None:
            return self.public_hosts
        own = self._own.get(raw)
        if own is None:
            host = raw.decode("latin-1").strip().lower()
            if self.public_hosts and host_name(raw) not in public_names(self.public_hosts):
                host = ""
            own = self.public_hosts | {host} if host else self.public_hosts
            if len(self._own) >= _OWN_HOSTS_MAX:
                self._own.clear()
            self._own[raw] = own
        return own

    def auth0_binding(self, request_headers: list[tuple[bytes, bytes]], cb: Callback, now: float) -> CallbackBinding:
        """Whether the callback's state / RelayState / InResponseTo was bound when Auth0 started it.

        The SAML response is decoded for its ``InResponseTo`` only when the browser holds bindings
        and neither state nor RelayState matched (an IdP that drops or rewrites RelayState)."""
        lines = cookie_lines(request_headers, AUTH0_PREFIX)
        if not lines:
            return NOT_BOUND
        for name, value in transaction_values(cb):
            found = find_login_by_name(lines, AUTH0_PREFIX, value, self.keys, AUTH0_PURPOSE, now, self.legacy_until)
            if found is not None:
                return CallbackBinding(_BOUND[name], found)
        xml = saml_document(cb)
        reply_to = in_response_to(xml) if xml else None
        if reply_to is None:
            return NOT_BOUND
        # The AuthnRequest's ID is a login's second value: its MAC is looked for in the login
        # cookies the list of logins in flight names (a login whose only value was the ID is found
        # by name as well). Never a scan of every cookie with the prefix: a sibling domain can
        # plant those, not the __Host- list.
        found = find_login_by_name(lines, AUTH0_PREFIX, reply_to, self.keys, AUTH0_PURPOSE, now, self.legacy_until)
        if found is None:
            listed = listed_logins(request_headers, LIST_COOKIE, self.keys, AUTH0_PURPOSE)
            found = find_listed_login(lines, AUTH0_PREFIX, listed, reply_to, self.keys, AUTH0_PURPOSE, now)
        return NOT_BOUND if found is None else CallbackBinding(_BOUND["InResponseTo"], found)

    def used_cookie(self, found: CallbackBinding) -> bytes | None:
        """Set-Cookie for the forwarded callback: the deletion of the login cookie it used (single
        use; the browser's other logins keep theirs). None when nothing matched."""
        return delete_cookie(found.cookie) if found.bound else None

    def _workos_values(self, cb: Callback) -> list[str]:
        values = [value for _, value in transaction_values(cb)]
        if not values:
            digest = callback_digest(cb)
            if digest is not None:
                values = [digest]
        return values

    def solicited(
        self, request_headers: list[tuple[bytes, bytes]], cb: Callback, now: float
    ) -> tuple[bool, bytes | None]:
        """Whether a ``fallback=auth0`` callback is one this proxy sent to WorkOS; and the Set-Cookie
        removing its entry."""
        found = copies(request_headers, WORKOS_COOKIE)
        for value in self._workos_values(cb) if found else ():
            match = find_copy(found, value, self.keys, WORKOS_PURPOSE, now)
            if match is not None and verify(match[0], match[1], self.keys, WORKOS_PURPOSE):
                # Solicited only if this service signed it: the count drives an alert.
                left = live(match[0], now, skip=match[2])
                return True, cookie_header(WORKOS_COOKIE, left, self.keys, WORKOS_PURPOSE, now)
        return False, None

    def workos_cookie(self, request_headers: list[tuple[bytes, bytes]], cb: Callback, now: float) -> bytes | None:
        """Set-Cookie for a callback this proxy sends to WorkOS, so its fallback is known as solicited."""
        values = self._workos_values(cb)
        if not values:
            return None
        return self._append(request_headers, WORKOS_COOKIE, WORKOS_PURPOSE, tuple(values), WORKOS_TTL, now)

    def bind(self, request_headers: list[tuple[bytes, bytes]], login: Login, now: float) -> list[bytes]:
        """The Set-Cookie headers binding a login Auth0 starts: a cookie of its own (see
        ``txcookie.login_cookie``), the list of logins in flight with its id added, and the deletion
        of the login cookies that fell off the list (the oldest beyond ``MAX_IN_FLIGHT``)."""
        made = login_cookie(AUTH0_PREFIX, login.values, self.keys, AUTH0_PURPOSE, int(now) + self.ttl, self.ttl)
        if made is None:
            return []
        listed, gone = with_login(listed_logins(request_headers, LIST_COOKIE, self.keys, AUTH0_PURPOSE), made[0])
        cookies = [made[1], list_cookie(_LIST_KEY, listed, self.ttl, self.keys, AUTH0_PURPOSE)]
        if gone:
            cookies += [delete_cookie(AUTH0_PREFIX + login_id) for login_id in gone]
        return cookies

    def _append(
        self,
        request_headers: list[tuple[bytes, bytes]],
        name: str,
        purpose: bytes,
        values: tuple[str, ...],
        ttl: int,
        now: float,
    ) -> bytes:
        """Set-Cookie with one record more than the request's cookie (see ``txcookie.add_record``)."""
        payload = read_payload(request_headers, name, self.keys, purpose)
        added = add_record(payload, values, self.keys, purpose, int(now) + ttl, now)
        return set_cookie(name, encoded(added, self.keys, purpose), ttl)


ACCEPTED = "accepted"
REFUSED = "refused"


def _names_error(part: bytes) -> bool:
    return any(unquote_to_bytes(pair.partition(b"=")[0].replace(b"+", b" ")) == b"error" for pair in part.split(b"&"))


def fallback_verdict(status: int, headers: list[tuple[bytes, bytes]]) -> str:
    """Auth0's verdict on a forwarded ``fallback=auth0`` callback.

    Accepted: a redirect (3xx) whose ``Location`` carries no ``error`` parameter (OAuth 2.0, RFC 6749
    section 4.1.2.1: an authorization error reaches the client as ``error=`` on its redirect URI, in
    the query or, for fragment response modes, the fragment). Refused: anything else, an error page
    (4xx/5xx), a 200 page, a redirect without ``Location`` or one carrying ``error``. Auth0 accepts
    only a callback for a transaction it started (or a signed IdP-initiated assertion), which a
    stranger cannot make: the count of accepted fallbacks cannot be forged.
    """
    if not 300 <= status < 400:
        return REFUSED
    location = header_value(headers, b"location")
    if location is None:
        return REFUSED
    rest, _, fragment = location.partition(b"#")
    query = rest.partition(b"?")[2]
    return REFUSED if _names_error(query) or _names_error(fragment) else ACCEPTED


class FallbackVerdict:
    """The response hook of a forwarded fallback: reads Auth0's verdict off the response head, and
    appends ``extra`` (the Set-Cookie using up the solicited record). Satisfies
    ``proxy.upstream.ResponseHook``; ``verdict`` stays refused when no response came."""

    __slots__ = ("extra", "verdict")

    def __init__(self, extra: list[tuple[bytes, bytes]]) -> None:
        self.extra = extra
        self.verdict = REFUSED

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], int]:
        self.verdict = fallback_verdict(status, headers)
        return self.extra, 0

    def body(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> list[tuple[bytes, bytes]]:
        return []  # pragma: no cover - never buffers


class PassthroughHook:
    """For one passthrough response: a 3xx or auto-post page starting a login gets the binding cookie.

    Satisfies ``proxy.upstream.ResponseHook``; ``counted`` is told the kind of each binding set.
    Only a 200 ``text/html`` response small enough to be an auto-post page is buffered (up to
    :data:`proxy.routing.logins.MAX_PAGE_BYTES`); everything else streams untouched.
    """

    __slots__ = ("binder", "counted", "now", "request_headers")

    def __init__(
        self,
        binder: Binder,
        request_headers: list[tuple[bytes, bytes]],
        now: float,
        counted: Callable[[str], None],
    ) -> None:
        self.binder = binder
        self.request_headers = request_headers
        self.now = now
        self.counted = counted

    def _cookie(self, login: Login | None) -> list[tuple[bytes, bytes]]:
        if login is None:
            return []
        cookies = self.binder.bind(self.request_headers, login, self.now)
        if not cookies:
            return []
        self.counted(login.kind)
        return [(b"set-cookie", cookie) for cookie in cookies]

    def head(self, status: int, headers: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], int]:
        if 300 <= status < 400:
            return self._cookie(inspect_response(status, headers, self.binder.own_hosts(self.request_headers))), 0
        return [], MAX_PAGE_BYTES if may_be_post_page(status, headers) else 0

    def body(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> list[tuple[bytes, bytes]]:
        page = decode_page(body, headers)
        if page is None:
            return []
        return self._cookie(inspect_page(page, self.binder.own_hosts(self.request_headers)))
