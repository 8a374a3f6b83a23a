"""Logs as one JSON object per line (`lci serve --log-format json`), for log shippers.

Every line has `ts`, `level`, `logger` and `message`, the request's context when one is being served
(`request_id`, `surface`, `owner` hashed, `trace_id` when tracing), and an event's own fields
(audit events: `event` and what it concerns, such as `session_id`, `path`, `bytes`, `outcome`,
`duration_ms`). Standard library only."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from engine import observe


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, var in (
            ("request_id", observe.request_id),
            ("surface", observe.surface),
            ("owner", observe.owner),
        ):
            if value := var.get():
                line[key] = value
        if trace_id := observe.trace_id():
            line["trace_id"] = trace_id
        event = getattr(record, "event", None)
        if event:
            line["event"] = event
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update({k: v for k, v in fields.items() if v not in (None, "")})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_json(level: int = logging.INFO) -> None:
    """Send the engine's logs, its audit events and uvicorn's to stderr as JSON lines. uvicorn's
    access log is left out: the engine writes its own (`lci.access`), with the request's id,
    surface, status and duration."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("engine", "lci", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
    for name in ("engine", "lci"):
        logging.getLogger(name).setLevel(level)
    logging.getLogger("uvicorn.access").disabled = True
