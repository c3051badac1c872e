"""Every saved fuzzing case (fuzz/corpus seeds and fuzz/crashes found by ``make fuzz``) replayed:
``decide`` must not raise and must answer workos or auth0 (see fuzz/fuzz_callback.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz.fuzz_callback import one_input

FUZZ = Path(__file__).resolve().parents[1] / "fuzz"
CASES = sorted(p for d in ("corpus", "crashes") for p in (FUZZ / d).glob("*") if p.is_file() and p.name != ".gitkeep")


@pytest.mark.parametrize("case", CASES, ids=[f"{p.parent.name}/{p.name[:40]}" for p in CASES])
def test_saved_fuzz_case(case: Path) -> None:
    one_input(case.read_bytes())
