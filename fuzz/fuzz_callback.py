"""Coverage-guided fuzzing of callback identification and the routing decision (``make fuzz``).

One input is ``flags`` (1 byte) + query + b"\\0" + body: bit 0 says the body is a form. The property
is the service's: ``decide`` never raises and answers only workos or auth0, whatever the bytes.
``one_input`` needs no fuzzer, so tests/test_fuzz_regressions.py replays every saved case (the seed
corpus and any crash atheris found, kept under fuzz/crashes/) on every test run.

Run: ``make fuzz`` (FUZZ_SECONDS=60 by default), or
``python fuzz/fuzz_callback.py fuzz/corpus -max_total_time=60 -artifact_prefix=fuzz/crashes/``.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FUZZING = __name__ == "__main__"
if FUZZING:
    import atheris  # only the fuzzing run needs it

    instrumented = atheris.instrument_imports(include=["proxy"])  # the service's code, not the stdlib's
else:
    instrumented = contextlib.nullcontext()
with instrumented:
    from proxy.routing.callback import Callback, in_response_to, saml_document
    from proxy.routing.decide import AUTH0, WORKOS, decide
    from proxy.routing.routemap import RouteMap, parse_routemap

ROUTES = (ROOT / "routes.yaml").read_bytes()


def route_map() -> RouteMap:
    return parse_routemap(ROUTES, "routes.yaml", None)


def split(data: bytes) -> Callback:
    """A fuzzer's bytes as a callback (see the module docstring)."""
    flags, rest = (data[0], data[1:]) if data else (0, b"")
    query, _, body = rest.partition(b"\0")
    return Callback(query, body, bool(flags & 1))


def one_input(data: bytes, rm: RouteMap | None = None) -> None:
    cb = split(data)
    decision = decide(cb, rm or ROUTE_MAP)
    in_response_to(saml_document(cb) or b"")  # what the transaction binding reads of a callback
    if decision.action not in (WORKOS, AUTH0):
        raise AssertionError(f"decided {decision.action!r}")


ROUTE_MAP = route_map()


if FUZZING:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
