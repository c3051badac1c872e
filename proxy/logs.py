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
        second = int(record.created)
        if second != self._second:
            self._stamp, self._second = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)), second
        out: dict[str, Any] = {
            "ts": f"{self._stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            names = tuple(fields)
            clean = self._clean.get(names)
            if clean is None:
                clean = not any(k.lower() in SECRET_FIELDS for k in names)
                if len(self._clean) < 256:  # the code's own call sites: a handful of sets
                    self._clean[names] = clean
            out.update(fields if clean else {k: v for k, v in fields.items() if k.lower() not in SECRET_FIELDS})
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(out, separators=(",", ":"), default=str)


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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
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
    if logger.isEnabledFor(level):
        logger.log(level, msg, extra={"fields": fields})
