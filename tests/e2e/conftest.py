"""Shared by the REST tests: a recording upstream API on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Recorder(BaseHTTPRequestHandler):
    received: list[dict] = []

    def log_message(self, *args: object) -> None:
        return

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else None
        Recorder.received.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
            }
        )
        if "/slow" in self.path:
            time.sleep(3)
        if "/fail" in self.path:
            status, payload = 422, {"errorMessages": ["Field 'summary' is required"]}
        elif "/huge-number" in self.path:
            status, payload = 200, {"id": 123456789012345678901234567890, "nan": "NaN"}
        elif "/echo-auth" in self.path:
            status, payload = 200, {"youSent": self.headers.get("Authorization")}
            if "/echo-auth/all" in self.path:  # the query as received (percent-encoded), a header
                payload |= {"path": self.path, "pat": self.headers.get("X-Pat")}
        else:
            status, payload = 201, {"id": "10000", "key": "PROJ-1"}
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Set-Cookie", "session=upstream-cookie")
        self.send_header("X-Request-Id", "req-42")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def last() -> Iterator[list[dict]]:
    Recorder.received.clear()
    yield Recorder.received
