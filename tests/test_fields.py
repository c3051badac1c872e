"""The one-pass field index of a query or form (proxy/routing/fields.py): the same answers as a scan of the
whole data for every name, and linear work whatever the input."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.routing.callback import Callback, form_field
from proxy.routing.fields import MAX_INDEXED, Fields

# Appended to data, a field long enough that the data is indexed by spans, not split.
LONG = b"&pad=" + b"p" * 1100
NAMES = [b"SAMLResponse", b"RelayState", b"state", b"code", b"connection", b"", b"x", b"a=b"]


@pytest.mark.parametrize(
    ("data", "name", "expected"),
    [
        (b"", b"state", None),
        (b"state=s1", b"state", b"s1"),
        (b"code=c&state=s1&state=s2", b"state", b"s1"),  # the first value
        (b"state=", b"state", b""),
        (b"state", b"state", None),  # no "=": names nothing
        (b"xstate=s", b"state", None),
        (b"RelayState=r", b"state", None),
        (b"a=1&&state=s&", b"state", b"s"),
        (b"state=a=b", b"state", b"a=b"),
        (b"st%61te=s", b"state", None),  # names are matched as written
        (b"&".join([b"x=1"] * MAX_INDEXED) + b"&state=late", b"state", b"late"),  # past the indexed fields
        (b"&".join([b"x=1"] * MAX_INDEXED) + b"&state=late&more=1", b"state", b"late"),
        (b"&".join([b"x=1"] * (MAX_INDEXED - 1)) + b"&state=edge", b"state", b"edge"),
        (b"&".join([b"x=1"] * MAX_INDEXED) + b"&xstate=no", b"state", None),
    ],
)
@pytest.mark.parametrize("pad", [b"", LONG])
def test_first(data: bytes, name: bytes, expected: bytes | None, pad: bytes) -> None:
    """Short data is split, long data (a form) indexed by spans: the same answers."""
    fields = Fields(data + pad)
    assert fields.first(name) == expected
    assert fields.has(name) is (expected is not None)


PIECES = st.sampled_from([b"state=s", b"state=", b"state", b"xstate=x", b"RelayState=r", b"code=c", b"", b"=", b"a"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(PIECES | st.binary(max_size=12), max_size=MAX_INDEXED + 10),
    st.sampled_from([b"&", b"&&", b";"]),
    st.sampled_from(NAMES),
)
def test_the_index_agrees_with_a_scan_of_the_whole_data(pieces: list[bytes], sep: bytes, name: bytes) -> None:
    for data in (sep.join(pieces), sep.join(pieces) + LONG, LONG[1:] + sep + sep.join(pieces)):
        assert Fields(data).first(name) == form_field(data, name)
        assert Fields(data).has(name) is (form_field(data, name) is not None)


def test_a_callback_reads_the_form_only_when_it_is_one() -> None:
    assert Callback(b"state=q", b"state=b", True).field(b"state") == b"b"
    assert Callback(b"state=q", b"state=b", False).field(b"state") == b"q"
    assert Callback(b"", b"state=b", False).has(b"state") is False


@pytest.mark.parametrize("unit", [b"&", b"a=1&", b"state", b"&state", b"=" * 3])
def test_hostile_data_is_indexed_in_linear_time(unit: bytes) -> None:
    """16 times the data costs at most 4 x 16 times as much (a ratio in one run, not a time)."""

    def cost(size: int) -> float:
        data = unit * (size // len(unit))
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            fields = Fields(data)
            for name in NAMES:
                fields.first(name)
            best = min(best, time.perf_counter() - started)
        return best

    small, large = cost(64_000), cost(1_024_000)
    assert large <= 4 * 16 * max(small, 1e-5)
