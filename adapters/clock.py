from __future__ import annotations

from datetime import UTC, datetime


class SystemClock:
    """UTC wall-clock time, truncated to milliseconds so every database stores the same value."""

    def now(self) -> datetime:
        now = datetime.now(UTC)
        return now.replace(microsecond=now.microsecond // 1000 * 1000)
