"""Structured logs: one JSON object per line on stderr.

Callers pass only safe fields (names, decisions, statuses). Nothing here ever receives a
SAMLResponse, id_token, code, state, cookie or the cname-api-key; ``SECRET_FIELDS`` is a second
guard that drops such keys if a caller ever passes one.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

LOGGER_NAME = "sso_proxy"
SECRET_FIELDS = frozenset(
    (
        "samlresponse",
        "id_token",
        "code",
        "state",
        "cookie",
        "set-cookie",
        "cname-api-key",
        "authorization",
        "relaystate",
        "body",
        "query",
    )
)


# One encoder for every line (json.dumps with these options builds a new one per call).
_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


class JsonFormatter(logging.Formatter):
    """Formats a record and its ``fields`` extra as one JSON line.

    A line is written for every callback at info, so the per-line work is kept small: the time to
    the second is formatted once a second, and a set of field names is checked against
    ``SECRET_FIELDS`` once (the callback line always has the same names)."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""
        self._clean: dict[tuple[str, ...], bool] = {}  # field names -> none is a secret's

    def format(self, record: logging.LogRecord) -> str:
        error = self.formatException(record.exc_info).splitlines()[-1] if record.exc_info else None
        fields = getattr(record, "fields", None)
        return self.line(
            record.created,
            record.levelname.lower(),
            record.getMessage(),
            fields if isinstance(fields, dict) else None,
            error,
        )

    def line(
        self, created: float, level: str, msg: str, fields: dict[str, Any] | None, error: str | None = None
    ) -> str:
        """The JSON line: time to the millisecond (UTC), level, message, the fields not named like a
        secret, and an exception's last line."""
        second = int(created)
        if second != self._second:
            self._stamp, self._second = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)), second
        out: dict[str, Any] = {"ts": f"{self._stamp}.{int((created - second) * 1000):03d}Z", "level": level, "msg": msg}
        if fields:
            names = tuple(fields)
            clean = self._clean.get(names)
            if clean is None:
                clean = not any(k.lower() in SECRET_FIELDS for k in names)
                if len(self._clean) < 256:  # the code's own call sites: a handful of sets
                    self._clean[names] = clean
            out.update(fields if clean else {k: v for k, v in fields.items() if k.lower() not in SECRET_FIELDS})
        if error is not None:
            out["error"] = error
        return _encode(out)


class JsonHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The service's handler: a ``logging.StreamHandler`` with :class:`JsonFormatter`, which
    :func:`log_event` also writes to directly (no ``LogRecord``: a third of a line's cost)."""

    formatter: JsonFormatter

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self.setFormatter(JsonFormatter())

    def event(self, level: int, msg: str, fields: dict[str, Any]) -> None:
        """Write one event's line, as ``emit`` writes a record's: under the handler's lock, flushed."""
        try:
            name = _LEVEL_NAMES.get(level) or logging.getLevelName(level).lower()
            text = self.formatter.line(time.time(), name, msg, fields) + self.terminator
            with self.lock:  # type: ignore[union-attr]
                self.stream.write(text)
                self.flush()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": msg, "levelno": level}))


_LEVEL_NAMES = {level: logging.getLevelName(level).lower() for level in range(0, 60, 10)}


def setup_logging(level: str) -> logging.Logger:
    """Route the service's and uvicorn's error logs through the JSON formatter.

    No record captures its caller, thread or process (the formatter writes none of them): the
    settings of the logging HOWTO's "Optimization" table
    (https://docs.python.org/3/howto/logging.html#optimization), which spare a stack walk and
    three look-ups a line."""
    logging._srcfile = None  # no stack walk to find the caller
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = JsonHandler(sys.stderr)
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.handlers[:] = [handler]
    uvicorn_error.propagate = False
    uvicorn_error.setLevel(max(logging.WARNING, logger.level))
    return logger


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def log_event(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    """One event's JSON line with ``fields``. When the logger's only handler is the service's own, with
    no filter on either and nothing propagated to a parent, the line is written to it directly (what
    ``Logger.log`` would write, without a ``LogRecord`` and the handler chain); otherwise through
    ``logging``."""
    if not logger.isEnabledFor(level):
        return
    handlers = logger.handlers
    if len(handlers) == 1 and not logger.filters and not logger.propagate:
        handler = handlers[0]
        if type(handler) is JsonHandler and not handler.filters and level >= handler.level:
            handler.event(level, msg, fields)
            return
    logger.log(level, msg, extra={"fields": fields})
