"""Structured logs: one JSON object per line, and the helper that logs a worker event.

An own formatter rather than a dependency: it is a dozen lines, and it puts exactly what we
want on the line (the time in UTC, level, logger, message, then every `extra` field as a
top-level key, so a log pipeline can filter on `execution_id` or `event` directly).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else on a record came from `extra`.
_RECORD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        entry.update(
            (key, value)
            for key, value in vars(record).items()
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
        )
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_event(logger: logging.Logger, event: str, *, level: int = logging.INFO, **ids) -> None:
    """Logs a worker event with its ids (proposal_id, execution_id, job_id, user_id, code …):
    separate fields in JSON, `event key=value …` in text."""
    details = " ".join(f"{key}={value}" for key, value in ids.items())
    logger.log(level, "%s %s", event, details, extra={"event": event, **ids})
