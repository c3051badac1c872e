"""Tests for proxy.logs: one JSON object per line, never a secret-named field."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from proxy.logs import JsonFormatter, log_event, setup_logging


@pytest.fixture
def lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    saved = logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing
    logger = setup_logging("info")
    handlers = list(logger.handlers)
    out = io.StringIO()
    logger.handlers[0].setStream(out)  # type: ignore[attr-defined]
    try:
        yield logger, out
    finally:
        logger.handlers[:] = handlers
        logger.filters.clear()
        logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing = saved


def _read(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


@pytest.mark.parametrize(
    ("fields", "kept"),
    [
        ({"connection": "acme", "status": 307}, {"connection": "acme", "status": 307}),
        ({"code": "c", "State": "s", "SAMLResponse": "x", "ok": 1}, {"ok": 1}),
        ({"Cookie": "a=b", "set-cookie": "x", "cname-api-key": "k", "query": "q", "body": "b"}, {}),
        ({"relaystate": "r", "id_token": "t", "Authorization": "Bearer x", "request_id": "r1"}, {"request_id": "r1"}),
    ],
    ids=["plain", "mixed case", "only secrets", "tokens"],
)
@pytest.mark.parametrize("via_logging", [False, True], ids=["direct", "through-logging"])
def test_secret_named_fields_never_reach_a_line(
    lines: tuple[logging.Logger, io.StringIO], fields: dict[str, object], kept: dict[str, object], via_logging: bool
) -> None:
    logger, out = lines
    if via_logging:  # a filter on the logger: log_event goes through a LogRecord
        logger.addFilter(lambda record: True)
    for _ in range(3):  # the same names again: the formatter remembers the set, not the verdict of another
        log_event(logger, logging.INFO, "callback", **fields)
    for line in _read(out):
        assert {k: v for k, v in line.items() if k not in ("ts", "level", "msg")} == kept
        assert line["msg"] == "callback" and line["level"] == "info"


def test_the_time_is_of_each_record_to_the_millisecond() -> None:
    formatter = JsonFormatter()
    stamps = []
    for created in (1_700_000_000.5, 1_700_000_000.999, 1_700_000_001.0, 1_699_999_999.25):
        record = logging.LogRecord("t", logging.INFO, "x", 0, "m", (), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        stamps.append(json.loads(formatter.format(record))["ts"])
    assert stamps == [
        "2023-11-14T22:13:20.500Z",
        "2023-11-14T22:13:20.999Z",
        "2023-11-14T22:13:21.000Z",
        "2023-11-14T22:13:19.250Z",
    ]


def test_an_exception_is_its_last_line(lines: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = lines
    try:
        raise ValueError("no route map")
    except ValueError:
        logger.exception("failed")
    [line] = _read(out)
    assert line["error"] == "ValueError: no route map"


def test_below_the_level_nothing_is_built(lines: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = lines
    log_event(logger, logging.DEBUG, "detail", connection="acme")
    assert out.getvalue() == ""


def test_the_direct_line_is_the_line_logging_writes(lines: tuple[logging.Logger, io.StringIO]) -> None:
    """log_event writes to the service's handler without a LogRecord; a filter on the logger sends it
    through logging instead. Both write the same line (but for its time)."""
    logger, out = lines
    fields = {"connection": "acme", "status": 307, "code": "never", "duration_ms": 1.25, "would": None}
    log_event(logger, logging.INFO, "callback", **fields)
    logger.addFilter(lambda record: True)
    try:
        log_event(logger, logging.INFO, "callback", **fields)
    finally:
        logger.filters.clear()
    direct, through_logging = _read(out)
    assert direct.pop("ts") and through_logging.pop("ts")
    assert (
        direct
        == through_logging
        == {
            "level": "info",
            "msg": "callback",
            "connection": "acme",
            "status": 307,
            "duration_ms": 1.25,
            "would": None,
        }
    )


def test_a_filter_or_the_handler_level_still_decides(lines: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = lines
    logger.addFilter(lambda record: False)
    try:
        log_event(logger, logging.WARNING, "dropped by the filter")
    finally:
        logger.filters.clear()
    logger.handlers[0].setLevel(logging.WARNING)
    log_event(logger, logging.INFO, "below the handler's level")
    log_event(logger, logging.WARNING, "kept")
    assert [line["msg"] for line in _read(out)] == ["kept"]


def test_a_stream_that_fails_does_not_raise(
    lines: tuple[logging.Logger, io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As logging's own emit: a failed write goes to handleError, never to the request."""
    logger, out = lines
    failed: list[logging.LogRecord] = []
    monkeypatch.setattr(logger.handlers[0], "handleError", failed.append)
    out.close()
    log_event(logger, logging.INFO, "callback", connection="acme")
    assert [record.getMessage() for record in failed] == ["callback"]


@pytest.mark.parametrize("level", [logging.WARNING, 25, logging.ERROR])
def test_a_level_is_named_as_logging_names_it(lines: tuple[logging.Logger, io.StringIO], level: int) -> None:
    logger, out = lines
    log_event(logger, level, "event")
    logger.addFilter(lambda record: True)
    log_event(logger, level, "event")
    direct, through_logging = _read(out)
    assert direct["level"] == through_logging["level"] == logging.getLevelName(level).lower()
