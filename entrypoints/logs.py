"""Every process's logs: one JSON object per line, on stderr.

Each line is ``{"time", "level", "logger", "msg"}`` (plus ``"exc"`` with a traceback), written by
``json.dumps``: whatever a message holds (quotes, line breaks, text from an upstream) stays inside
``msg`` and cannot forge fields or lines.

Libraries that log what they send or store are held at WARNING whatever ``LOG_LEVEL`` says: httpx
logs each request's full URL at INFO (a query may carry an API key), httpcore the raw headers at
DEBUG (credentials an upstream echoes), aiosqlite every statement's parameters at DEBUG (step
inputs and outputs), botocore request bodies at DEBUG (secrets written to AWS Secrets Manager).
"""

from __future__ import annotations

import json
import logging

QUIET = ("httpx", "httpcore", "aiosqlite", "botocore", "boto3", "urllib3", "s3transfer", "alembic")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str, separators=(",", ":"))


def configure_logging(level: str) -> None:
    """Every command's logging; also run by each `tolstoy worker --processes` child, which is
    spawned (a fresh interpreter that runs none of the cli's main)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    floor = max(root.level, logging.WARNING)
    for name in QUIET:
        logging.getLogger(name).setLevel(floor)
