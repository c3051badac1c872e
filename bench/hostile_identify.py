"""Cost of identifying hostile callbacks against a real one (issue 11, finding 2).

Prints, for each hostile family of tests/test_hostile_input.py at the 1 MiB body limit, the best
time of ``decide`` and its ratio to a real 10 KB SAML POST measured in the same run. Run:
``.venv/bin/python bench/hostile_identify.py`` (about a minute). Figures of record: bench/NOTES.md.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from proxy.routing.callback import Callback
from proxy.routing.decide import decide
from tests import samples
from tests.test_hostile_input import FAMILIES, LARGE, ROUTE_MAP


def best(cb: Callback, repeat: int = 20) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        decide(Callback(cb.query, cb.body, cb.form), ROUTE_MAP)  # fresh: a Callback keeps what it read
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    real = Callback(b"", samples.saml_form(samples.saml_xml(padding=8000)).encode(), True)
    base = best(real, 200)
    print(f"{'case':28s} {'body bytes':>11s} {'best ms':>9s} {'x real 10 KB':>13s}")
    print(f"{'real SAML POST (10 KB)':28s} {len(real.body):>11,d} {base * 1000:>9.3f} {1:>13.1f}")
    for name in sorted(FAMILIES):
        cb = FAMILIES[name](LARGE)
        size = len(cb.body) + len(cb.query)
        took = best(cb)
        print(f"{name:28s} {size:>11,d} {took * 1000:>9.3f} {took / base:>13.1f}")


if __name__ == "__main__":
    main()
