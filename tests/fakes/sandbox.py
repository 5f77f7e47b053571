"""An in-memory Sandbox: "code" names a Python function registered by the test, which gets the
context the real sandboxes give to JavaScript. It keeps the port's promises (results, not
exceptions; logs captured; one session per execution) without running any code."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

from application.ports import SandboxResult, SandboxRun


class ScriptError(Exception):
    pass


class FakeSession:
    def __init__(self, sandbox: FakeSandbox) -> None:
        self._sandbox = sandbox

    async def run(self, run: SandboxRun) -> SandboxResult:
        return await self._sandbox._run(run)


class FakeSandbox:
    name = "fake"

    def __init__(self) -> None:
        self.functions: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.sessions = 0
        self.runs: list[SandboxRun] = []
        self._background: dict[str, asyncio.Task[SandboxResult]] = {}
        self.stopped: list[str] = []  # background runs stopped by their caller
        self._ids = itertools.count(1)

    def define(self, name: str, function: Callable[[dict[str, Any]], Any]) -> str:
        self.functions[name] = function
        return name

    @contextlib.asynccontextmanager
    async def session(self, scope: str | None = None) -> AsyncIterator[FakeSession]:
        self.sessions += 1
        yield FakeSession(self)

    async def _run(self, run: SandboxRun) -> SandboxResult:
        self.runs.append(run)
        function = self.functions.get(run.code)
        if function is None:
            return SandboxResult(
                False, error={"message": f"unknown script {run.code!r}", "code": "SYNTAX_ERROR"}
            )
        logs: list[dict[str, Any]] = []
        context = {**run.context, "log": lambda message: logs.append({"type": "log", "message": message})}
        try:
            output = function(context)
            if asyncio.iscoroutine(output):
                output = await output
        except ScriptError as exc:
            return SandboxResult(
                False,
                logs=tuple(logs),
                error={"message": str(exc), "code": "RUNTIME_ERROR", "stack": "at script"},
            )
        return SandboxResult(True, output=output, logs=tuple(logs))

    async def start(self, run: SandboxRun) -> str:
        session_id = f"fake_{next(self._ids)}"
        self._background[session_id] = asyncio.create_task(self._run(run))
        return session_id

    async def stop(self, session_id: str) -> None:
        self.stopped.append(session_id)
        task = self._background.pop(session_id, None)
        if task is not None:
            task.cancel()

    async def poll(self, session_id: str) -> SandboxResult | None:
        task = self._background.get(session_id)
        if task is None:
            return SandboxResult(False, error={"message": "unknown session", "code": "SANDBOX_UNAVAILABLE"})
        return task.result() if task.done() else None
