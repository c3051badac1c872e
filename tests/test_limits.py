"""The pure core of proxy/edge/limits.py: head checks, the body budget, body reading. The protocol itself
is exercised through the real server in tests/test_hostile.py."""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import pytest

from proxy.edge.limits import (
    BodyBudget,
    BodyTooLarge,
    ClientGone,
    OverBudget,
    RequestControl,
    ensure_descriptors,
    head_problem,
    read_body,
    request_id,
)

HOST = (b"host", b"login.example.com")


@pytest.mark.parametrize(
    ("url", "headers", "version", "expected"),
    [
        (b"/", [HOST], "1.1", None),
        (b"/", [HOST, (b"x", b"a" * 100)], "1.1", None),
        (b"/", [HOST, (b"x", b"a" * 1000)], "1.1", 431),
        (b"/" + b"a" * 1000, [HOST], "1.1", 431),
        (b"/", [HOST, HOST], "1.1", 400),  # RFC 9112 3.2: more than one Host
        (b"/", [], "1.1", 400),  # no Host in HTTP/1.1
        (b"/", [], "1.0", None),  # HTTP/1.0 has no Host requirement
        (b"/", [(b"host", b"")], "1.1", None),  # empty Host is allowed (RFC 9110 7.2)
        (b"/", [(b"host", b"login.example.com:8443")], "1.1", None),
        (b"/", [(b"host", b"[::1]:8080")], "1.1", None),
        (b"/", [(b"host", b"127.0.0.1")], "1.1", None),
        (b"/", [(b"host", b"user@evil.example")], "1.1", 400),
        (b"/", [(b"host", b"evil.example/x")], "1.1", 400),
        (b"/", [(b"host", b"a b")], "1.1", 400),
        (b"/", [(b"host", b"a:99999999")], "1.1", 400),
        (b"/", [(b"host", b"a" * 300)], "1.1", 400),
    ],
)
def test_head_problem(url: bytes, headers: list[tuple[bytes, bytes]], version: str, expected: int | None) -> None:
    assert head_problem(url, headers, version, 512) == expected


def test_head_problem_is_linear() -> None:
    """Every parser has a linear bound: 10,000 headers are one pass (no quadratic host scan)."""
    headers = [HOST] + [(b"x-%d" % i, b"v") for i in range(10_000)]
    assert head_problem(b"/", headers, "1.1", 1 << 30) is None
    assert head_problem(b"/", headers, "1.1", 1000) == 431


def test_budget_take_and_give() -> None:
    budget = BodyBudget(10)
    assert budget.take(6) and not budget.take(5) and budget.take(4)
    budget.give(10)
    assert budget.used == 0


def feed(*messages: dict[str, Any]) -> Any:
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        return queue.pop(0)

    return receive


def body(chunk: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.request", "body": chunk, "more_body": more}


@pytest.mark.parametrize(
    ("declared", "messages", "result"),
    [
        (3, [body(b"abc")], b"abc"),
        (-1, [body(b"ab", True), body(b"cd")], b"abcd"),  # chunked: taken as it comes
        (0, [body(b"")], b""),
        (20, [], BodyTooLarge),  # declared above max_bytes: refused before reading
        (-1, [body(b"a" * 11)], BodyTooLarge),
        (-1, [body(b"ab", True), {"type": "http.disconnect"}], ClientGone),
        (4, [body(b"ab", True), {"type": "http.disconnect"}], ClientGone),
    ],
)
def test_read_body(declared: int, messages: list[dict[str, Any]], result: bytes | type[Exception]) -> None:
    budget = BodyBudget(100)
    if isinstance(result, bytes):
        got = asyncio.run(read_body(feed(*messages), declared, 10, budget))
        assert got == result
        assert budget.used == len(result)  # the caller gives it back after forwarding
    else:
        with pytest.raises(result):
            asyncio.run(read_body(feed(*messages), declared, 10, budget))
        assert budget.used == 0  # nothing stays taken on failure


@pytest.mark.parametrize(
    ("declared", "messages"),
    [(8, [body(b"a" * 8)]), (-1, [body(b"a" * 5, True), body(b"a" * 3)])],
)
def test_read_body_over_budget(declared: int, messages: list[dict[str, Any]]) -> None:
    budget = BodyBudget(10)
    assert budget.take(4)
    with pytest.raises(OverBudget):
        asyncio.run(read_body(feed(*messages), declared, 100, budget))
    assert budget.used == 4


def test_request_id_is_the_clients_or_one_per_request() -> None:
    scope: dict[str, Any] = {"headers": [(b"x-request-id", b"abc")]}
    assert request_id(scope) == "abc"
    scope = {"headers": [(b"x-request-id", b"a" * 200)]}
    control = RequestControl(scope["headers"])
    scope["extensions"] = {"sso_proxy": control}
    first = request_id(scope)
    assert len(first) == 32 and request_id(scope) == first == control.request_id


def test_control_cancels_only_while_armed() -> None:
    async def main() -> tuple[bool, bool]:
        control = RequestControl([])
        control.client_gone()  # nothing armed: nothing to cancel
        gone_before = control.arm()
        control = RequestControl([])

        async def wait() -> None:
            assert control.arm()
            await asyncio.sleep(10)

        task = asyncio.create_task(wait())
        await asyncio.sleep(0)
        control.client_gone()
        with pytest.raises(asyncio.CancelledError):
            await task
        control.abort()  # no cycle (not served by the protocol): a no-op
        return gone_before, control.gone

    assert asyncio.run(main()) == (False, True)


def test_ensure_descriptors_never_lowers() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert ensure_descriptors(16) == (soft, hard)
    raised, _ = ensure_descriptors(soft + 1)
    assert raised >= min(soft + 1, hard)
