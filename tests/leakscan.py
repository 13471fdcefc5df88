"""The session-wide leak scan: every value a test put into a Secret, looked for in everything syncjob
printed or logged during the session - processes, in-process runs and log records alike - raw and
base64, whatever its length. Run from conftest.py at the end of the session, whatever the file order."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from tests.factories import SEEDED_SECRETS

__all__ = ["ALL_OUTPUTS", "LOG_RECORDS", "SEEDED_SECRETS", "capture_log_records", "hits"]

# Everything syncjob printed (stdout, stderr) in this session: tests append to it.
ALL_OUTPUTS: list[str] = []
# Every log record any syncjob logger made in this process, rendered: captured at the source, so a run
# that nobody redirected (an Applier called directly, a fault test's in-process run) is scanned too.
LOG_RECORDS: list[str] = []


def hits(texts: Iterable[str], needles: Iterable[str] | None = None) -> list[str]:
    """The seeded values found in `texts`."""
    values = {n for n in (SEEDED_SECRETS if needles is None else needles) if n}
    corpus = "\n".join(texts)
    return sorted(v for v in values if v in corpus)


def capture_log_records() -> None:
    """Record every syncjob log record (event and fields) however its handlers are set up."""
    make_record: Callable[..., logging.LogRecord] = logging.Logger.makeRecord

    def recording(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(self, *args, **kwargs)
        if self.name.startswith("syncjob"):
            fields = getattr(record, "fields", {})
            LOG_RECORDS.append(f"{record.getMessage()} {json.dumps(fields, default=str)}")
        return record

    logging.Logger.makeRecord = recording  # type: ignore[method-assign]
