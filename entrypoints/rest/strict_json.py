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
from starlette.routing import Match
from starlette.types import Scope


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = orjson.loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """Also matches fast: a path that does not start with the route's literal prefix (the part
    before its first parameter) is refused before any regex or scope bookkeeping; with ~60 routes
    tried in order, that is most of what routing a request costs."""

    def __init__(self, path: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(path, *args, **kwargs)
        self._literal_prefix = self.path.split("{", 1)[0]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if not scope.get("root_path") and not scope.get("path", "").startswith(self._literal_prefix):
            return Match.NONE, {}
        return super().matches(scope)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler  # nothing to parse: no wrapper on the hot read paths

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
