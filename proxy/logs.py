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
    """Formats a record and its ``fields`` extra as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update({k: v for k, v in fields.items() if k.lower() not in SECRET_FIELDS})
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(out, separators=(",", ":"), default=str)


def setup_logging(level: str) -> logging.Logger:
    """Route the service's and uvicorn's error logs through the JSON formatter."""
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
