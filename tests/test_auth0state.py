"""Auth0's own state as a second witness (issue 23): the strict parser, by tables.

Real shapes are states found in public repositories (proxy/routing/auth0state.py says where);
near misses change one thing of a real shape; hostile inputs are long, non-ASCII or of another
encoding. The bound on work: refusing a value 16 times longer costs at most a linear share more.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from proxy.routing.auth0state import MAX_CHARS, MIN_CHARS, any_auth0_state, is_auth0_state
from proxy.sandbox.standin import auth0_state, issue_state, pack_map

# Found in public repositories (see the module docstring): classic login, Universal Login, Actions.
REAL = {
    "classic-skykick": (
        "g6Fo2SBTd3M5Q0xBT0JMd3luS2JUTGlYN3pYTE1remJQZnR1c6N0aWTZIDhCSkwzYVQxX2ZMZjNUaWxNUHhCSXg2OHJzbllT"
        "cmYto2NpZNkgM0h6czk3ZlF6aFNJV1VNVWQzMmpHeFFDbDRIMkx5VEc"
    ),
    "classic-stockx": (
        "g6Fo2SBWQjdGMUtEaG9HQ2xRYWt6Q1M0NWY3M2lFY3U5SnFsYaN0aWTZIG40QWc2R1ppbERMVkRMTHhGdF9ZZHE2OUxXQ2RG"
        "am9Go2NpZNkgT1Z4cnQ0VkpxVHg3TElVS2Q2NjFXMER1Vk1wY0ZCeUQ"
    ),
    "universal-login": (
        "hKFo2SBCUWRPRkZUQ25yb2FFRHh2NjMzcXJkb0xUak5sa1JOeKFur3VuaXZlcnNhbC1sb2dpbqN0aWTZIGNjcUc3NnJrek9L"
        "elRRR0RWWmlTLXI0ek5UdHJ6YTN5o2NpZNkgRFJpdnNubTJNdTQyVDNLT3BxZHR3QjNOWXZpSFl6d0Q"
    ),
    "login": (
        "hKFo2SBCSjVFajhyM211MDdIX1VXdUdLSzlFeUJTb1o3LUVYU6FupWxvZ2luo3RpZNkgc0NDdzczeFNwbl8zTjN5bkpuY3pQ"
        "VXM5Sk9rVHZ0TFajY2lk2SB0V05sSkJmcXY4QjVjOXJWcml5OUVhdkVaTjN6cjQ2NQ"
    ),
    "redirect": (
        "hKFo2SBXVHpENFpidlZ0eXdXWmF6MXA0TmxDUXFBWVU4MDBHMKFuqHJlZGlyZWN0o3RpZNkgU3o5dmVLQWFFcjJrOUZmR0Zs"
        "MzB4bHVfRG10M3ZFZHajY2lk2SBpc1dybEV1UmU0VnUxcWh3OWc4bmtUT3BjZld6eGhMOA"
    ),
    "authorize-oidc-connection": (
        "hKFo2SBxOEZ0VW9kMVRIZHNpbmR6dldBNEZLSG4ybGtfX2pWUKFupWxvZ2luo3RpZNkgTzByM0hGeUFhbnR3MWVSdGViNkFS"
        "WVViUWZWV21SS0ejY2lk2SBrQ3A0UmhSRmNReVgyaU1oWklHV1FkSXplVmRXcmJWZQ"
    ),
}
ID = "A" * 32
ID2 = "b-_9" * 8


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def state(pairs: list[tuple[str, str]]) -> str:
    return b64(pack_map(pairs))


@pytest.mark.parametrize("value", list(REAL.values()), ids=list(REAL))
def test_real_states_are_of_the_form(value: str) -> None:
    assert is_auth0_state(value)


@pytest.mark.parametrize(
    "pairs",
    [
        [("h", ID), ("tid", ID), ("cid", ID)],
        [("h", ID), ("n", "login"), ("tid", ID), ("cid", ID)],
        [("h", ID2), ("n", "x"), ("tid", ID2), ("cid", ID2)],
        [("h", ID), ("n", "n" * 31), ("tid", ID), ("cid", ID)],  # the longest name: MAX_CHARS
    ],
    ids=["three", "four", "short-name", "longest-name"],
)
def test_made_states_of_the_form(pairs: list[tuple[str, str]]) -> None:
    value = state(pairs)
    assert MIN_CHARS <= len(value) <= MAX_CHARS
    assert is_auth0_state(value)


def test_the_standin_issues_the_form_and_its_variant_does_not() -> None:
    assert all(is_auth0_state(auth0_state()) for _ in range(50))
    assert all(is_auth0_state(auth0_state(None)) for _ in range(50))
    assert not any(is_auth0_state(issue_state("opaque")) for _ in range(50))


UNIVERSAL = REAL["universal-login"]
RAW = base64.urlsafe_b64decode(UNIVERSAL + "=" * (-len(UNIVERSAL) % 4))

NEAR_MISSES = {
    # the key set
    "two-keys": state([("h", ID), ("tid", ID)]),
    "extra-key": state([("h", ID), ("n", "login"), ("tid", ID), ("cid", ID), ("x", "y")]),
    "n-without-four": state([("h", ID), ("n", "login"), ("tid", ID)]),
    "duplicate-key": state([("h", ID), ("h", ID), ("tid", ID)]),
    "duplicate-key-four": state([("h", ID), ("tid", ID), ("tid", ID), ("cid", ID)]),
    "other-key": state([("h", ID), ("sid", ID), ("cid", ID)]),
    "key-case": state([("H", ID), ("tid", ID), ("cid", ID)]),
    # the same keys in another order: not how Auth0 writes its map (every sample is h, [n,] tid, cid)
    "reordered-three": state([("cid", ID), ("tid", ID), ("h", ID)]),
    "reordered-four": state([("h", ID), ("tid", ID), ("n", "login"), ("cid", ID)]),
    "four-with-n-missing": state([("h", ID), ("x", "login"), ("tid", ID), ("cid", ID)]),
    # the values
    "id-31": state([("h", ID[:31]), ("tid", ID), ("cid", ID)]),
    "id-33": state([("h", ID + "A"), ("tid", ID), ("cid", ID)]),
    "id-other-alphabet": state([("h", ID[:31] + "."), ("tid", ID), ("cid", ID)]),
    "id-space": state([("h", ID[:31] + " "), ("tid", ID), ("cid", ID)]),
    "name-empty": state([("h", ID), ("n", ""), ("tid", ID), ("cid", ID)]),
    "name-32": state([("h", ID), ("n", "n" * 32), ("tid", ID), ("cid", ID)]),
    "name-header-longer": b64(RAW.replace(b"\xa1n\xaf", b"\xa1n\xb0", 1)),
    "name-header-shorter": b64(RAW.replace(b"\xa1n\xaf", b"\xa1n\xae", 1)),
    "name-dot": state([("h", ID), ("n", "a.b"), ("tid", ID), ("cid", ID)]),
    "id-as-bin8": b64(RAW.replace(b"\xd9\x20", b"\xc4\x20", 1)),
    "id-as-str16": b64(RAW[:3] + b"\xda\x00\x20" + RAW[5:]),
    "map16-header": b64(b"\xde\x00\x04" + RAW[1:]),
    "fixmap-5": b64(b"\x85" + RAW[1:]),
    "array-not-map": b64(b"\x94" + RAW[1:]),
    "int-value": b64(b"\x83\xa1h\x01\xa3tid\xd9\x20" + ID.encode() + b"\xa3cid\xd9\x20" + ID.encode()),
    # the bytes and the text
    "trailing-byte": b64(RAW + b"\x00"),
    "trailing-map": b64(RAW + b"\x80"),
    "truncated": b64(RAW[:-1]),
    "truncated-in-key": b64(RAW[:38]),
    "padded": UNIVERSAL + "=" * (-len(UNIVERSAL) % 4) if len(UNIVERSAL) % 4 else UNIVERSAL + "=",
    "standard-alphabet": UNIVERSAL.replace("-", "+").replace("_", "/") + "+",
    "percent-encoded": UNIVERSAL[:10] + "%41" + UNIVERSAL[10:],
    "whitespace": UNIVERSAL[:20] + " " + UNIVERSAL[20:],
    "newline": UNIVERSAL[:20] + "\n" + UNIVERSAL[20:],
    "one-char-dropped": UNIVERSAL[:-1],
    "one-char-added": UNIVERSAL + "A",
    "non-canonical-last-char": UNIVERSAL[:-1] + chr(ord(UNIVERSAL[-1]) + 1),
    "prefix-only": "hKFo2SB",
    "empty": "",
    "json-base64": b64(b'{"h":"' + ID.encode() + b'","tid":"' + ID.encode() + b'","cid":"' + ID.encode() + b'"}'),
    "opaque": "s-" + "x" * 160,
}


@pytest.mark.parametrize("value", list(NEAR_MISSES.values()), ids=list(NEAR_MISSES))
def test_near_misses_are_not_of_the_form(value: str) -> None:
    assert not is_auth0_state(value)


HOSTILE = {
    "1-mb": "hKFo2SB" + "A" * (1 << 20),
    "long-valid-prefix": UNIVERSAL * 100,
    "non-ascii": UNIVERSAL[:50] + "é" + UNIVERSAL[51:],
    "surrogate": UNIVERSAL[:50] + "\udcff" + UNIVERSAL[51:],
    "nul": UNIVERSAL[:50] + "\x00" + UNIVERSAL[51:],
    "fullwidth-digits": UNIVERSAL[:50] + "\uff11" + UNIVERSAL[51:],
    "all-equals": "=" * 160,
    "just-under": "h" + "A" * (MIN_CHARS - 2),
    "just-over": UNIVERSAL + "A" * (MAX_CHARS + 1 - len(UNIVERSAL)),
    "zeros": b64(b"\x84" + b"\x00" * 140),
    "nested-maps": b64(b"\x84" + b"\x81" * 140),
    "str32-header": b64(b"\x84\xa1h\xdb\xff\xff\xff\xff" + b"A" * 130),
}


@pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_values_are_refused_without_raising(value: str) -> None:
    assert not is_auth0_state(value)


def test_any_reads_every_value() -> None:
    assert any_auth0_state((("state", "x"), ("RelayState", UNIVERSAL)))
    assert not any_auth0_state((("state", "x"), ("RelayState", "y")))
    assert not any_auth0_state(())


def _best(value: str, repeat: int = 200) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeat):
            is_auth0_state(value)
        best = min(best, time.perf_counter() - started)
    return best


@pytest.mark.parametrize("unit", ["A", "hKFo2SB", "é"])
def test_work_is_bounded_whatever_the_length(unit: str) -> None:
    """A value 16 times longer costs no more than a small constant factor (nothing past MAX_CHARS
    is read: the length is checked first); quadratic work would cost 256 times as much."""
    small, large = unit * 4_000, unit * 64_000
    assert _best(large) / max(_best(small), 1e-9) < 4


def test_explain_says_whether_the_state_is_of_auth0s_form(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`sso-proxy explain` reads the second witness as the server does: an unbound code callback whose
    state is of Auth0's form is decided Auth0 (reason auth0_state); another state follows the map."""
    from proxy.cli import main
    from tests.conftest import ROUTES_YAML

    routes = tmp_path / "routes.yaml"
    routes.write_text(ROUTES_YAML)
    url = "https://login.example.com/login/callback?code=c1&state="
    assert main(["explain", "--routes", str(routes), url + UNIVERSAL]) == 10
    shown = capsys.readouterr().out
    assert "auth0 state:    state of the form of Auth0's own transaction state" in shown
    assert "reason:         auth0_state" in shown
    assert main(["explain", "--routes", str(routes), url + "opaque-state"]) == 0  # unknown -> workos
    shown = capsys.readouterr().out
    assert "auth0 state:    state not of the form of Auth0's own state" in shown
    assert "reason:         unknown_default" in shown
