"""Logs are one JSON object per line, whatever a message holds, and libraries that log what they
send or store stay quiet below WARNING."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from entrypoints.logs import QUIET, configure_logging


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level, {name: logging.getLogger(name).level for name in QUIET}
    try:
        configure_logging("debug")
        out = io.StringIO()
        root.handlers[0].setStream(out)  # type: ignore[attr-defined]
        yield out
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        for name, level in saved[2].items():
            logging.getLogger(name).setLevel(level)


def test_every_line_is_json_and_a_message_cannot_forge_fields(captured: io.StringIO) -> None:
    log = logging.getLogger("tolstoy.test")
    log.info('HTTP Request: GET "x" "HTTP/1.1 200 OK"\n{"level":"ERROR","msg":"forged"}')
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed %s", "here")
    lines = captured.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO" and first["logger"] == "tolstoy.test"
    assert first["msg"].endswith('{"level":"ERROR","msg":"forged"}')
    assert second["msg"] == "failed here" and "ValueError: boom" in second["exc"]


def test_libraries_that_log_urls_headers_or_parameters_stay_at_warning(captured: io.StringIO) -> None:
    for name in ("httpx", "httpcore", "aiosqlite", "botocore"):
        logging.getLogger(name).info("GET http://upstream/?api_key=secret-value")
        logging.getLogger(f"{name}.sub").debug("Authorization: Bearer secret-value")
    assert "secret-value" not in captured.getvalue()
    logging.getLogger("httpx").warning("a warning still shows")
    assert json.loads(captured.getvalue())["msg"] == "a warning still shows"
