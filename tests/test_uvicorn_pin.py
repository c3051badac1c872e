"""What proxy/edge/limits.py relies on in uvicorn's httptools protocol, pinned.

The edge subclasses ``HttpToolsProtocol`` (head and body limits, idle and trailer handling) rather
than running a server of its own. That holds only while uvicorn keeps the names and behaviours
below; a uvicorn release that changes one fails here, by name, before anything reaches the raw-
socket tests (tests/test_edge.py, tests/test_hostile.py) as a mystery.
"""

from __future__ import annotations

import asyncio
import inspect

import httptools
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from proxy.edge import limits


def test_the_protocol_methods_the_subclass_overrides_or_calls_exist() -> None:
    for name in (
        "connection_made",
        "connection_lost",
        "data_received",
        "on_message_begin",
        "on_headers_complete",
        "on_body",
        "on_message_complete",
        "_start_asgi_task",
        "_unset_keepalive_if_required",
    ):
        assert callable(getattr(HttpToolsProtocol, name, None)), name
    signature = inspect.signature(HttpToolsProtocol.__init__)
    assert list(signature.parameters)[:5] == ["self", "config", "server_state", "app_state", "_loop"]


def test_trailer_fields_arrive_through_on_header_into_self_headers() -> None:
    """_TrailerSink drops trailers by replacing ``self.headers``: uvicorn's on_header must append to
    it, and httptools must call on_header for trailer fields and on_chunk_header per chunk."""
    source = inspect.getsource(HttpToolsProtocol.on_header)
    assert "self.headers.append(" in source

    seen: list[str] = []

    class Probe:
        def on_header(self, name: bytes, value: bytes) -> None:
            seen.append("header:" + name.decode())

        def on_headers_complete(self) -> None:
            seen.append("complete")

        def on_chunk_header(self) -> None:
            seen.append("chunk")

        def on_body(self, body: bytes) -> None:
            seen.append("body")

    parser = httptools.HttpRequestParser(Probe())
    parser.feed_data(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-T: 1\r\n\r\n")
    assert seen == ["header:Host", "header:Transfer-Encoding", "complete", "chunk", "body", "chunk", "header:X-T"]


def test_the_cycle_attributes_the_guard_reads_and_sets_exist() -> None:
    cycle_source = inspect.getsource(RequestResponseCycle.__init__)
    for name in (
        "response_started",
        "response_complete",
        "disconnected",
        "keep_alive",
        "more_body",
        "body",
        "message_event",
        "transport",
    ):
        assert f"self.{name} =" in cycle_source, name


def test_the_keepalive_timer_is_the_one_the_guard_leaves_to_uvicorn() -> None:
    """An idle connection's keep-alive wait is uvicorn's ``timeout_keep_alive_task``, armed when a
    response completes and cancelled by any bytes (which is why the guard starts its head clock on
    bytes that begin no request)."""
    assert "timeout_keep_alive_task" in inspect.getsource(HttpToolsProtocol.on_response_complete)
    assert "_unset_keepalive_if_required" in inspect.getsource(HttpToolsProtocol.data_received)
    assert "HIGH_WATER_LIMIT" in dir(httptools_impl)


def test_the_guarded_protocol_is_built_as_uvicorn_builds_its_own() -> None:
    guarded = limits.guarded_protocol(
        limits.Guard(limits.Limits(), lambda status: ([], b""), lambda reason: None, lambda: False, None)  # type: ignore[arg-type]
    )
    assert issubclass(guarded, HttpToolsProtocol)
    assert asyncio.Protocol in guarded.__mro__
