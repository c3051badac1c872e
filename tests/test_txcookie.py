"""The binding cookie as tables: MACs, the records' bounds, rotation, tampering, expiry, and the
all-slots search checked against a plain slot-by-slot comparison."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import timeit
from typing import NamedTuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.routing import txcookie
from proxy.routing.cookieheader import cookie_starts, cookie_values, delete_cookie, set_cookie
from proxy.routing.txcookie import (
    LOGIN_PREFIX_CHARS,
    LOGIN_RECORD,
    MAC_BYTES,
    MAX_ENTRIES,
    RECORD,
    TAG_BYTES,
    Keys,
    add_record,
    cookie_header,
    encode,
    expiry,
    find_listed_login,
    find_login_by_name,
    live,
    live_match,
    login_cookie,
    matching_records,
    read_payload,
    verified_payload,
)

# Reference readers, here rather than in the module: the request path never needs them.


def mac(key: bytes, purpose: bytes, value: str) -> bytes:
    """The truncated HMAC-SHA256 of one value for one purpose: what the fast path must compute."""
    return hmac.digest(key, txcookie.message(purpose, value), hashlib.sha256)[:MAC_BYTES]


def find_record(payload: bytes, value: str, keys: Keys, purpose: bytes, now: float) -> int | None:
    """The first unexpired record holding the MAC of ``value`` under any key, else None."""
    return live_match(payload, txcookie.value_macs(value, keys, purpose), now) if payload else None


class Entry(NamedTuple):
    expires: int
    tags: tuple[bytes, ...]


def entries(payload: bytes, now: float) -> tuple[Entry, ...]:
    """The unexpired records, read."""
    out = []
    for record, expires in enumerate(txcookie.expiries(payload)):
        at = record * RECORD + 4
        first, second = payload[at : at + MAC_BYTES], payload[at + MAC_BYTES : at + 2 * MAC_BYTES]
        if expires > now:
            out.append(Entry(expires, (first,) if first == second else (first, second)))
    return tuple(out)


KEY_A = b"a" * 32
KEY_B = b"b" * 32
KEYS = Keys((KEY_A,))
PURPOSE = b"sso-proxy auth0 transaction v2"
OTHER_PURPOSE = b"sso-proxy workos redirect v2"
NOW = 1_700_000_000.0
LATER = int(NOW) + 600


def decode(value: str | bytes | None, keys: Keys = KEYS, now: float = NOW) -> tuple[Entry, ...]:
    return entries(verified_payload(value, keys, PURPOSE), now)


def test_mac_is_hmac_sha256_truncated_and_purpose_bound() -> None:
    expected = hmac.new(KEY_A, PURPOSE + b"\x00state-1", hashlib.sha256).digest()[:MAC_BYTES]
    assert mac(KEY_A, PURPOSE, "state-1") == expected
    assert mac(KEY_A, OTHER_PURPOSE, "state-1") != expected
    assert mac(KEY_B, PURPOSE, "state-1") != expected


@pytest.mark.parametrize("key", [b"a" * 32, b"k" * 64, b"long" * 40, bytes(range(256))])
def test_the_fast_hmac_is_hmac_sha256(key: bytes) -> None:
    """Keys.digest (prepared inner/outer states) against the standard library's HMAC."""
    keys = Keys((b"x" * 32, key))
    for value in ("", "state-1", "\u00e9t\u00e9", "s" * 500):
        assert keys.digest(1, PURPOSE + b"\x00" + value.encode())[:MAC_BYTES] == mac(key, PURPOSE, value)


def test_keys_are_required_and_never_printed() -> None:
    with pytest.raises(ValueError):
        Keys(())
    assert "aaaa" not in repr(Keys((KEY_A,)))


def test_round_trip() -> None:
    payload = add_record(b"", ("state-1",), KEYS, PURPOSE, LATER, NOW)
    value = encode(payload, KEYS, PURPOSE)
    assert verified_payload(value, KEYS, PURPOSE) == payload
    assert verified_payload(value.encode(), KEYS, PURPOSE) == payload
    assert decode(value) == (Entry(LATER, (mac(KEY_A, PURPOSE, "state-1"),)),)
    assert find_record(payload, "state-1", KEYS, PURPOSE, NOW) == 0
    assert find_record(payload, "other", KEYS, PURPOSE, NOW) is None
    # A MAC made for one purpose never verifies for the other.
    assert verified_payload(value, KEYS, OTHER_PURPOSE) == b""
    assert find_record(payload, "state-1", KEYS, OTHER_PURPOSE, NOW) is None


def test_several_logins_in_flight_oldest_dropped() -> None:
    payload = b""
    for i in range(MAX_ENTRIES + 3):
        payload = add_record(payload, (f"state-{i}", f"_id{i}"), KEYS, PURPOSE, LATER + i, NOW)
        value = encode(payload, KEYS, PURPOSE)
        assert len(value) <= txcookie.MAX_COOKIE_CHARS
        payload = verified_payload(value, KEYS, PURPOSE)
    assert len(payload) == MAX_ENTRIES * RECORD
    assert find_record(payload, "state-0", KEYS, PURPOSE, NOW) is None  # the oldest went
    assert find_record(payload, "state-3", KEYS, PURPOSE, NOW) == 0
    assert find_record(payload, f"_id{MAX_ENTRIES + 2}", KEYS, PURPOSE, NOW) == MAX_ENTRIES - 1


def test_the_same_value_twice_is_one_record() -> None:
    """A retried redirect replaces its record instead of filling the cookie."""
    payload = add_record(b"", ("s",), KEYS, PURPOSE, int(NOW) + 10, NOW)
    payload = add_record(payload, ("t",), KEYS, PURPOSE, int(NOW) + 15, NOW)
    payload = add_record(payload, ("s", "_id"), KEYS, PURPOSE, int(NOW) + 20, NOW)
    assert [e.expires for e in entries(payload, NOW)] == [int(NOW) + 15, int(NOW) + 20]
    assert find_record(payload, "_id", KEYS, PURPOSE, NOW) == 1


def test_expired_records_never_match_and_are_dropped_when_written() -> None:
    payload = add_record(b"", ("old",), KEYS, PURPOSE, int(NOW) - 1, NOW - 700)
    payload = add_record(payload, ("new",), KEYS, PURPOSE, LATER, NOW - 700)
    assert find_record(payload, "old", KEYS, PURPOSE, NOW) is None
    assert find_record(payload, "new", KEYS, PURPOSE, NOW) == 1
    assert len(live(payload, NOW)) == RECORD
    assert len(add_record(payload, ("x",), KEYS, PURPOSE, LATER, NOW)) == 2 * RECORD
    assert decode(encode(payload, KEYS, PURPOSE), now=NOW + 601) == ()


def test_the_first_unexpired_match_is_found() -> None:
    """The same value in an expired record and a live one (the TTL was lowered): the live one."""
    expired = int(NOW).to_bytes(4, "big") + mac(KEY_A, PURPOSE, "s") * 2
    fresh = LATER.to_bytes(4, "big") + mac(KEY_A, PURPOSE, "s") * 2
    assert find_record(expired + fresh, "s", KEYS, PURPOSE, NOW) == 1
    assert matching_records(expired + fresh, mac(KEY_A, PURPOSE, "s")) == [0, 1]


def test_rotation_first_key_signs_all_verify() -> None:
    old = Keys((KEY_A,))
    rotated = Keys((KEY_B, KEY_A))
    payload = add_record(b"", ("state-old",), old, PURPOSE, LATER, NOW)
    value = encode(payload, old, PURPOSE)
    # A login started before the rotation still matches after it.
    kept = verified_payload(value, rotated, PURPOSE)
    assert find_record(kept, "state-old", rotated, PURPOSE, NOW) == 0
    # A new login is signed with the new key; the old record is kept beside it.
    both = add_record(kept, ("state-new",), rotated, PURPOSE, LATER, NOW)
    value = encode(both, rotated, PURPOSE)
    assert verified_payload(value, Keys((KEY_B,)), PURPOSE) == both
    assert find_record(both, "state-new", Keys((KEY_B,)), PURPOSE, NOW) == 1
    # Once the old key is retired, cookies it alone signed hold nothing, and its MACs match nothing.
    assert verified_payload(encode(payload, old, PURPOSE), Keys((KEY_B,)), PURPOSE) == b""
    assert find_record(both, "state-old", Keys((KEY_B,)), PURPOSE, NOW) is None


def _valid() -> str:
    return encode(add_record(b"", ("s",), KEYS, PURPOSE, LATER, NOW), KEYS, PURPOSE)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "x",
        "!!!!",
        "=" * 40,
        "A" * 600,  # oversized
        base64.urlsafe_b64encode(b"\x00" * (RECORD + TAG_BYTES)).decode(),  # right shape, wrong tag
        _valid()[:-2] + ("AA" if not _valid().endswith("AA") else "BB"),  # tag tampered
        "B" + _valid()[1:] if not _valid().startswith("B") else "C" + _valid()[1:],  # expiry tampered
        _valid() + "A",
        "\u00e9" * 10,
        b"\xff\xfe\x00",
    ],
)
def test_tampered_garbage_or_oversized_cookie_holds_nothing(value: str | bytes | None) -> None:
    assert verified_payload(value, KEYS, PURPOSE) == b""


@pytest.mark.parametrize("size", [0, RECORD - 1, RECORD + 1, (MAX_ENTRIES + 1) * RECORD])
def test_a_signed_but_malformed_payload_holds_nothing(size: int) -> None:
    payload = ((int(NOW) + 60).to_bytes(4, "big") * (size // 4 + 1))[:size]
    tag = hmac.digest(KEY_A, PURPOSE + payload, hashlib.sha256)[:TAG_BYTES]
    value = base64.urlsafe_b64encode(payload + tag).decode().rstrip("=")
    assert verified_payload(value, KEYS, PURPOSE) == b""


def reference_matches(payload: bytes, wanted: bytes) -> list[int]:
    """Slot by slot, the obvious way."""
    return [
        at // RECORD
        for at in range(0, len(payload), RECORD)
        if wanted in (payload[at + 4 : at + 4 + MAC_BYTES], payload[at + 4 + MAC_BYTES : at + RECORD])
    ]


SLOT = st.sampled_from(
    [b"\x00" * MAC_BYTES, b"\xff" * MAC_BYTES, b"\x80" + b"\x00" * 7, b"\x00" * 7 + b"\x01", b"w" * MAC_BYTES]
)


@settings(max_examples=300, deadline=None)
@given(
    records=st.lists(
        st.tuples(st.binary(min_size=4, max_size=4), SLOT | st.binary(min_size=MAC_BYTES, max_size=MAC_BYTES), SLOT)
    ),
    wanted=SLOT,
)
def test_the_all_slots_search_agrees_with_a_slot_by_slot_one(
    records: list[tuple[bytes, bytes, bytes]], wanted: bytes
) -> None:
    payload = b"".join(e + a + b for e, a, b in records[:MAX_ENTRIES])
    assert matching_records(payload, wanted) == reference_matches(payload, wanted)
    # The first live one: expiries drawn from 4 arbitrary bytes, so some are past and some not.
    now = float(1 << 31)
    macs = [b"\x01" * MAC_BYTES, wanted]
    first_live = (r for w in macs for r in reference_matches(payload, w) if expiry(payload, r) > now)
    assert live_match(payload, macs, now) == next(first_live, None)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], []),
        ([(b"cookie", b"a=1; sso_proxy_tx=V1; b=2")], [b"V1"]),
        ([(b"cookie", b"sso_proxy_tx=V1"), (b"cookie", b"x_sso_proxy_tx=no; sso_proxy_tx=V2")], [b"V1", b"V2"]),
        ([(b"cookie", b"a=sso_proxy_tx=no;sso_proxy_tx=V3 ")], [b"V3"]),
        ([(b"cookie", b"sso_proxy_txx=no")], []),
        ([(b"user-agent", b"sso_proxy_tx=no")], []),
        ([(b"cookie", b"; ".join([b"sso_proxy_tx=V"] * 10))], [b"V"] * 4),  # the first four only
    ],
)
def test_cookie_values(headers: list[tuple[bytes, bytes]], expected: list[bytes]) -> None:
    assert cookie_values(headers, "sso_proxy_tx") == expected


def test_a_planted_copy_does_not_hide_the_real_one() -> None:
    real = _valid().encode()
    headers = [(b"cookie", b"sso_proxy_tx=garbage; sso_proxy_tx=" + real)]
    assert read_payload(headers, "sso_proxy_tx", KEYS, PURPOSE) == verified_payload(real, KEYS, PURPOSE)


def test_a_hostile_cookie_header_is_read_in_linear_time() -> None:
    """32 KiB (the head limit) of near-misses: one find per occurrence, no quadratic rescans."""
    header = b"x" + b"sso_proxy_tx=" * 2500
    started = time.perf_counter()
    assert read_payload([(b"cookie", header)], "sso_proxy_tx", KEYS, PURPOSE) == b""
    assert time.perf_counter() - started < 1.0


def test_set_cookie_attributes() -> None:
    header = set_cookie("sso_proxy_tx", "V", 600).decode()
    assert header == "sso_proxy_tx=V; Path=/login/callback; Max-Age=600; Secure; HttpOnly; SameSite=None"
    assert "Max-Age=0" in delete_cookie("sso_proxy_tx").decode()
    assert cookie_header("sso_proxy_tx", b"", KEYS, PURPOSE, NOW) == delete_cookie("sso_proxy_tx")
    payload = add_record(b"", ("a",), KEYS, PURPOSE, int(NOW) + 30, NOW)
    payload = add_record(payload, ("b",), KEYS, PURPOSE, int(NOW) + 90, NOW)
    assert b"Max-Age=90;" in cookie_header("sso_proxy_tx", payload, KEYS, PURPOSE, NOW)  # the newest record's


# --- one cookie per login (format 4) ----------------------------------------------------------------

PREFIX = b"sso_proxy_tx_"


def login_made(values: tuple[str, ...], expires: int = LATER, keys: Keys = KEYS) -> tuple[bytes, bytes]:
    """(id, name=value) of a login cookie."""
    made = login_cookie(PREFIX, values, keys, PURPOSE, expires, 600)
    assert made is not None
    return made[0], made[1].split(b";", 1)[0]


def login_pair(values: tuple[str, ...], expires: int = LATER, keys: Keys = KEYS) -> bytes:
    return login_made(values, expires, keys)[1]


def test_a_login_cookie() -> None:
    made = login_cookie(PREFIX, ("s1",), KEYS, PURPOSE, LATER, 600)
    assert made is not None
    login_id, cookie = made
    pair, *attributes = cookie.split(b"; ")
    name, value = pair.split(b"=")
    assert name == PREFIX + login_id
    assert name.startswith(PREFIX) and len(name) == len(PREFIX) + 11 and len(PREFIX) == LOGIN_PREFIX_CHARS
    assert len(value) == LOGIN_RECORD * 4 // 3 == 44 and value.translate(None, b"-_").isalnum()
    assert attributes == [b"Path=/login/callback", b"Max-Age=600", b"Secure", b"HttpOnly", b"SameSite=None"]
    assert login_cookie(PREFIX, (), KEYS, PURPOSE, LATER, 600) is None
    record = base64.urlsafe_b64decode(value)
    assert record[:5] == b"\x04" + LATER.to_bytes(4, "big")
    assert record[5:13] == record[13:21] == mac(KEY_A, PURPOSE, "s1")  # one value: its MAC in both slots
    tag = hmac.new(KEY_A, PURPOSE + b"\x01" + login_id + record[:21], hashlib.sha256).digest()[:12]
    assert record[21:] == tag


@pytest.mark.parametrize(
    ("line", "key", "expected"),
    [
        (b"", b"a=", []),
        (b"a=1", b"a=", [0]),
        (b"x=1; a=1", b"a=", [5]),
        (b"x=1;a=1", b"a=", [4]),  # HTTP/2 crumbs joined without a space
        (b"x=1;\t a=1", b"a=", [6]),
        (b"  a=1", b"a=", [2]),
        (b"x=1 a=1", b"a=", []),  # a space inside another cookie's value is no boundary (RFC 6265 5.4)
        (b"x=a=1", b"a=", []),  # inside another cookie's value
        (b"xa=1", b"a=", []),  # the end of another name
        (b"x=1;" + b" " * 100 + b"a=1", b"a=", []),  # more whitespace than any client sends
        (b"a=1; a=2; b=a=3", b"a=", [0, 5]),
    ],
)
def test_cookie_starts(line: bytes, key: bytes, expected: list[int]) -> None:
    assert cookie_starts(line, key) == expected


def test_a_hostile_cookie_line_is_scanned_in_linear_time() -> None:
    """Occurrences of the name and whitespace: one find each and a bounded look back."""

    small, large = (b";" + (b" " * 20 + b"sso_proxy_tx_a=") * n for n in (200, 1600))
    best = {small: float("inf"), large: float("inf")}
    for _ in range(9):  # interleaved, by CPU time: a slow spell of a shared machine costs both
        for line in best:
            timer = time.process_time
            took = timeit.timeit(lambda line=line: cookie_starts(line, b"sso_proxy_tx_a="), number=5, timer=timer)
            best[line] = min(best[line], took)
    assert best[large] / best[small] < 8 * 2  # 8 times the header: linear, with room for noise


def test_a_login_is_found_by_the_name_its_value_gives() -> None:
    pair = login_pair(("s1",))
    name = pair.split(b"=", 1)[0]
    others = [login_pair((f"o{n}",)) for n in range(80)]  # any number in flight: found by name
    lines = [b"; ".join([*others, b"a=1", pair])]
    assert find_login_by_name(lines, PREFIX, "s1", KEYS, PURPOSE, NOW) == name
    assert find_login_by_name(lines, PREFIX, "s2", KEYS, PURPOSE, NOW) is None
    assert find_login_by_name(lines, PREFIX, "s1", KEYS, PURPOSE, LATER) is None  # expired
    assert find_login_by_name(lines, PREFIX, "s1", KEYS, OTHER_PURPOSE, NOW) is None
    assert find_login_by_name(lines, PREFIX, "s1", Keys((KEY_B, KEY_A)), PURPOSE, NOW) == name  # rotation
    assert find_login_by_name(lines, PREFIX, "", KEYS, PURPOSE, NOW) is None
    # The name alone binds nothing: another login's record under this name is refused (its tag
    # covers the id its name carries).
    forged = name + b"=" + others[0].split(b"=", 1)[1]
    assert find_login_by_name([forged], PREFIX, "s1", KEYS, PURPOSE, NOW) is None
    assert find_login_by_name([b"x=" + pair], PREFIX, "s1", KEYS, PURPOSE, NOW) is None  # inside a value
    assert find_login_by_name([b"x=1 " + pair], PREFIX, "s1", KEYS, PURPOSE, NOW) is None  # after a space in one
    assert find_login_by_name([pair + b"x"], PREFIX, "s1", KEYS, PURPOSE, NOW) is None  # not its whole value
    assert find_login_by_name([pair + b" x"], PREFIX, "s1", KEYS, PURPOSE, NOW) is None  # nor with a space
    assert find_login_by_name([pair + b" ; b=1"], PREFIX, "s1", KEYS, PURPOSE, NOW) == name  # whitespace trimmed
    assert find_login_by_name([forged + b"; " + pair], PREFIX, "s1", KEYS, PURPOSE, NOW) == name
    # Every copy of the name is looked at: planted copies never push the real one out.
    crowd = b"; ".join([forged] * 200 + [pair])
    assert find_login_by_name([crowd], PREFIX, "s1", KEYS, PURPOSE, NOW) == name


def test_an_in_response_to_is_found_through_the_list() -> None:
    saml_id, saml = login_made(("relay", "_id"))
    oidc_id, oidc = login_made(("s1",))
    planted = [b"%s%011d=%s" % (PREFIX, n, b"A" * 44) for n in range(100)]
    lines = [b"; ".join([*planted, oidc, saml])]
    listed = oidc_id + b"." + saml_id
    assert find_listed_login(lines, PREFIX, listed, "_id", KEYS, PURPOSE, NOW) == saml.split(b"=")[0]
    assert find_listed_login(lines, PREFIX, oidc_id, "_id", KEYS, PURPOSE, NOW) is None  # not listed
    assert find_listed_login(lines, PREFIX, listed, "_other", KEYS, PURPOSE, NOW) is None
    assert find_listed_login(lines, PREFIX, listed, "_id", KEYS, PURPOSE, LATER) is None  # expired
    assert find_listed_login(lines, PREFIX, b"", "_id", KEYS, PURPOSE, NOW) is None
    assert find_listed_login(lines, PREFIX, listed, "_id", Keys((KEY_B, KEY_A)), PURPOSE, NOW) is not None
    # A record moved under a listed name of another login: its tag covers the id, so refused.
    moved = [PREFIX + oidc_id + b"=" + saml.split(b"=")[1]]
    assert find_listed_login(moved, PREFIX, oidc_id, "_id", KEYS, PURPOSE, NOW) is None
