"""JSON logs on stderr, one object per line."""

from __future__ import annotations

import logging
import sys
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from syncjob.errors import ConfigError

LOGGER_NAME = "syncjob"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class EventFormatter(JsonFormatter):
    """Puts an event's fields at the top level; they travel in one `fields` attribute so that
    names like `name` or `message` cannot collide with LogRecord's own attributes."""

    def add_fields(self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_record, record, message_dict)
        log_record.pop("fields", None)
        log_record.update(getattr(record, "fields", {}))


def setup_logging(level: str = "INFO") -> logging.Logger:
    if level.upper() not in LEVELS:
        raise ConfigError(f"--log-level {level!r}: use one of {', '.join(LEVELS)}")
    logger = logging.getLogger(LOGGER_NAME)
    logger.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        EventFormatter(
            "%(asctime)s %(levelname)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "message": "event"},
        )
    )
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return logger


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    logging.getLogger(LOGGER_NAME).log(level, event, extra={"fields": fields})
