"""Is a ``state`` / ``RelayState`` of the form Auth0 gives its own transaction state?

The form: base64url (no padding, canonical) of a MessagePack map whose keys are exactly ``h``,
``tid``, ``cid`` (classic login, ``g6Fo2SB…``: fixmap of 3, fixstr ``h``, str8 of 32) or ``h``,
``n``, ``tid``, ``cid`` (Universal Login, ``hKFo2SB…``), in that order, ``h``, ``tid`` and ``cid``
each a str8 of 32 base64url characters and ``n`` a fixstr of 1-31 (``login``,
``universal-login``, ``redirect``), and nothing after the map.

Evidence (public, none of it a promise):

- Auth0's own documentation, "Configure default login routes": Auth0 redirects to
  ``https://{yourDomain}/login?state=g6Fo2SBjNTRyanlVa3ZqeHN4d1htTnh&...`` and "the state parameter
  points to a record in an internal database where we track the status of the authorization
  transaction" (a mirror: auth0-cq3uo.mintlify.app/docs/authenticate/login/auth0-universal-login/
  configure-default-login-routes).
- Public repositories hold many such URLs of Auth0 tenants (searched for ``state=g6Fo2SB`` and
  ``state=hKFo2SB``): classic ``/login?state=g6Fo2SB…&client=…&protocol=oauth2`` pages
  (login.skykick.com, accounts.stockx.com, \\*.auth0.com tenants), Universal Login
  ``/u/login/identifier?state=hKFo2SB…`` (auth0.openai.com, login.docker.com, auth.thomsonreuters.com)
  with ``n`` = ``universal-login``; ``/login?state=hKFo2SB…`` with ``n`` = ``login``
  (auth.mtnonline.com); an Actions redirect's ``/continue?state=hKFo2SB…`` with ``n`` = ``redirect``;
  ``/authorize?connection=main-tenant-oidc&state=hKFo2SB…`` (a tenant's own hop to an OIDC
  connection). Every one decodes to exactly this form (tests/test_auth0state.py keeps some).
- Not found: any public sample of the ``state`` or ``RelayState`` Auth0 sends to an *enterprise*
  IdP (``RelayState=g6Fo2SB`` and ``RelayState=hKFo2SB`` have no hits). That it has the same form is
  likely, not documented. So this is a second witness, checked against the binding cookie
  (``sso_proxy_witness_disagreements_total``), never the only one; forging the form only sends a
  callback to Auth0, which ``fallback=auth0`` allows anyway.

Why a few lines of our own and not the ``msgpack`` package (``bench/micro_auth0state.py``, this
project's 2-core machine shared with four test suites, load average 6.8, process CPU time, best of 7;
bench/NOTES.md "Auth0's state as a second witness"):

- speed: a real ``hKFo2SB…`` state (175 characters) is judged in 1.7 µs (base64 by ``binascii``
  in C, then one compiled regex over the 131 bytes), against 3.0 µs for ``msgpack.unpackb`` with
  every limit set plus the same checks on the dict it returns; a near miss of the right length
  0.4 µs against 1.6 µs; a 100 KB value 0.07 µs either way (refused by its length, nothing decoded);
- safety: ``unpackb`` builds whatever the bytes describe (ints, floats, nested maps, ext types,
  timestamps) before we can look at it; its limits bound sizes, not shape, and it raises many kinds
  of exception (ExtraData, FormatError, StackError, ValueError, TypeError on unhashable keys). The
  regex accepts only the bytes of the one shape, builds nothing, and cannot raise; and it is one
  dependency fewer in the image.

Pure, never raises, linear in the input and bounded by :data:`MAX_CHARS` before any work.
"""

from __future__ import annotations

import binascii
import re

# 3 keys: 1 + (2 + 2 + 32) + 2 * (4 + 2 + 32) = 113 bytes -> 151 characters. 4 keys add ``n``
# (2 + 1 + up to 31): at most 147 bytes -> 196 characters.
MIN_CHARS = 151
MAX_CHARS = 196
MAX_NAME = 31  # n: a fixstr (MessagePack's 0xa0-0xbf), as every sample has it

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
# The last character of an unpadded text of 4k+2 (4k+3) characters carries 4 (2) bits the decoder
# drops: only the characters whose dropped bits are zero are canonical (one text per state).
_CANONICAL_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}
_ID = rb"\xd9\x20[A-Za-z0-9_-]{32}"  # str8 of 32 characters of the base64url alphabet
# The map as Auth0 writes it, in its key order (every public sample): h, [n,] tid, cid. A map with
# the same keys in another order is another form: the disagreement metric would show it, and the
# cookie still routes meanwhile.
_FORM = re.compile(
    rb"\x83\xa1h" + _ID + rb"\xa3tid" + _ID + rb"\xa3cid" + _ID
    + rb"|\x84\xa1h" + _ID + rb"\xa1n([\xa1-\xbf])([A-Za-z0-9_-]{1,31})\xa3tid" + _ID + rb"\xa3cid" + _ID
)  # fmt: skip


def _b64url(value: str) -> bytes | None:
    """The bytes of an unpadded base64url text, or None if it is not exactly that (any character
    outside the alphabet, padding, a length no encoding has, or non-zero unused bits)."""
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        return None
    extra = len(raw) % 4
    if raw.translate(None, _ALPHABET) or extra == 1 or (extra and value[-1] not in _CANONICAL_LAST[extra]):
        return None
    try:
        return binascii.a2b_base64(raw.translate(_TO_STANDARD) + b"=" * (-extra % 4), strict_mode=True)
    except binascii.Error:  # pragma: no cover - the checks above leave nothing for the decoder to refuse
        return None


def is_auth0_state(value: str) -> bool:
    """Whether ``value`` is exactly of the form of Auth0's transaction state (see the module docstring)."""
    if not MIN_CHARS <= len(value) <= MAX_CHARS or value[0] not in "gh":
        return False
    data = _b64url(value)
    if data is None:
        return False
    found = _FORM.fullmatch(data)
    if found is None:
        return False
    header, name = found.group(1, 2)
    return header is None or header[0] & 0x1F == len(name)


def any_auth0_state(values: tuple[tuple[str, str], ...]) -> bool:
    """Whether any of a callback's (name, value) pairs (``callback.transaction_values``) is of the form."""
    for _, value in values:
        if is_auth0_state(value):
            return True
    return False
