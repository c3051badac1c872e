"""Micro-benchmark: is a callback's state of Auth0's own form? (issue 23, proxy/routing/auth0state.py)

Compares the parser the service uses (base64 by ``binascii``, one compiled regex over the bytes)
with the ``msgpack`` package doing the same job (``unpackb`` with every limit set, then the same
checks on the dict it returns), when ``msgpack`` is installed (it is not a dependency:
``pip install msgpack`` to compare). Every case is checked for the same answer first.

    python bench/micro_auth0state.py [--number N] [--repeat R]

Prints µs per call, the best of R rounds of N calls, by this process's CPU time.
"""

from __future__ import annotations

import argparse
import base64
import re
import sys
import time
import timeit
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proxy.routing.auth0state import MAX_CHARS, MIN_CHARS, is_auth0_state

# Public samples (see proxy/routing/auth0state.py): Universal Login (4 keys) and classic (3 keys).
UNIVERSAL = (
    "hKFo2SBCUWRPRkZUQ25yb2FFRHh2NjMzcXJkb0xUak5sa1JOeKFur3VuaXZlcnNhbC1sb2dpbqN0aWTZIGNjcUc3NnJrek9LelRRR0RWWmlTLXI0"
    "ek5UdHJ6YTN5o2NpZNkgRFJpdnNubTJNdTQyVDNLT3BxZHR3QjNOWXZpSFl6d0Q"
)
CLASSIC = (
    "g6Fo2SBTd3M5Q0xBT0JMd3luS2JUTGlYN3pYTE1remJQZnR1c6N0aWTZIDhCSkwzYVQxX2ZMZjNUaWxNUHhCSXg2OHJzbllTcmYto2NpZNkgM0h6"
    "czk3ZlF6aFNJV1VNVWQzMmpHeFFDbDRIMkx5VEc"
)
CASES = {
    "Universal Login state (175 chars)": UNIVERSAL,
    "classic state (151 chars)": CLASSIC,
    "opaque state (32 chars)": "Zx" * 16,
    "near miss in the length window (171 chars)": "h" + "x" * 170,
    "hostile 100 KB": "h" * 100_000,
}
_ALPHABET = re.compile(r"[A-Za-z0-9_-]+")


def with_msgpack() -> Callable[[str], bool] | None:
    try:
        import msgpack  # type: ignore[import-not-found]
    except ImportError:
        return None

    def check(value: str) -> bool:
        if not MIN_CHARS <= len(value) <= MAX_CHARS:
            return False
        try:
            data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
            found: Any = msgpack.unpackb(
                data, raw=False, max_str_len=64, max_bin_len=0, max_array_len=0, max_map_len=4, max_ext_len=0
            )
        except Exception:  # ExtraData, FormatError, StackError, ValueError, TypeError, binascii.Error ...
            return False
        if not isinstance(found, dict) or set(found) not in ({"h", "tid", "cid"}, {"h", "n", "tid", "cid"}):
            return False
        for key, text in found.items():
            if not isinstance(text, str) or not _ALPHABET.fullmatch(text) or (key != "n" and len(text) != 32):
                return False
        return True

    return check


def best(func: Callable[[str], bool], value: str, number: int, repeat: int) -> float:
    timer = timeit.Timer(lambda: func(value), timer=time.process_time)
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    other = with_msgpack()
    print("| case | own parser µs | msgpack µs |\n|---|---:|---:|")
    for name, value in CASES.items():
        if other is not None:
            assert other(value) == is_auth0_state(value), name
        own = best(is_auth0_state, value, args.number, args.repeat)
        theirs = f"{best(other, value, args.number, args.repeat):.2f}" if other is not None else "not installed"
        print(f"| {name} | {own:.2f} | {theirs} |")


if __name__ == "__main__":
    main()
