"""JSON responses rendered by orjson, straight from presenter dicts (no second validation pass)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JSONBytes(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def json(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> JSONBytes:
    return JSONBytes(content, status_code=status_code, headers=headers)
