"""Request bodies parsed as strict JSON by orjson.

Python's json module accepts NaN and Infinity (which no database stores as JSON), lone UTF-16
surrogates, and nests until the interpreter's recursion limit. orjson refuses all of them with a
JSONDecodeError, which FastAPI reports as a malformed body (400).
"""

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler  # nothing to parse: no wrapper on the hot read paths

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
