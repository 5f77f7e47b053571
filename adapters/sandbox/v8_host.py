"""The child process of ``ProcessV8Sandbox``: a ``V8Sandbox`` served over stdin/stdout.

``python -m adapters.sandbox.v8_host '{"memory_mb": 64, ...}'`` (the ``V8Sandbox`` keywords, as
JSON). The parent writes requests to stdin and reads answers from stdout; stderr is the parent's
to log (V8 prints its fatal errors there), so nothing here ever writes user code, context or
output to it - an unexpected failure is told by its exception type alone.

Frames
------
A frame is an 8-byte header - two big-endian 32-bit numbers: the body's length, the request's id -
then the body: one JSON array (orjson). The length's top bit set means "decode with the ``json``
module" (a value orjson cannot carry: an integer beyond 64 bits, a lone surrogate, a dict with
keys that are not strings...). An answer has the id of its request; id 0 asks for no answer.

===============================================================  ===========================================
request body                                                     answer body
===============================================================  ===========================================
``["open", session_id, scope]``                                  none (handled in order: a ``run`` sent
                                                                 right after it finds the session)
``["run", session_id, code, language, context, timeout_ms,``     ``[result]``
``expression]``
``["close", session_id]``                                        none
``["start", code, language, context, timeout_ms, expression]``   ``[session_id]``
``["poll", session_id]``                                         ``[result or null]``
``["stop", session_id]``                                         none (that background run is cancelled)
``["cancel", request_id]``                                       none (that run's task is cancelled)
``["shutdown"]``                                                 ``[true]``, then the process exits
===============================================================  ===========================================

A result is ``[success, output, logs, error, execution_ms, session_id]``. A request that fails
unexpectedly (or cannot be read) is answered ``[null, "<exception type>"]``.

The child also writes frames of id 0, answering nothing: ``["stuck"]`` says that an isolate given
up has not stopped (``V8Sandbox.on_stuck``: V8 runs on in a built-in that ignores termination, on a
CPU core, and only the end of the process stops it). The parent then sends this process no new run
and kills it once the runs in flight there are over.

Requests are read in order. A run gets a task of its own (many run at once: V8 evaluates on its
own threads); the others are handled at once, before the next request is read. End of stdin (the
parent went away) ends the process like ``shutdown``. The process ignores SIGINT (the parent stops
it) and makes no core dump (its memory holds tenants' data).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import struct
import sys
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson

from adapters.sandbox.v8 import V8Sandbox, check_nesting
from application.ports import SandboxResult, SandboxRun, SandboxSession

HEADER = struct.Struct(">II")  # body length (| JSON_MODULE), request id
JSON_MODULE = 0x8000_0000  # the length's top bit: the body is for json.loads, not orjson
LENGTH = 0x7FFF_FFFF
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_SHUTDOWN_GRACE_S = 1.0


def encode(message: Any, context: Any = None) -> tuple[bytes, int]:
    """A frame's body and its flag: orjson when it can carry the message exactly, else the ``json``
    module (``default=str`` either way, as ``V8Sandbox`` serialises a context). Raises
    ``ValueError``/``TypeError``/``RecursionError`` for what neither can (a cycle). ``context``, a
    run's context in the message, is refused as ``V8Sandbox`` refuses it when nested deeper than
    ``MAX_NESTING`` (``ValueError``), before the ``json`` module recurses into it: a deeper one
    would not be read on the other side."""
    try:
        return orjson.dumps(message, default=str, option=_ORJSON_OPTIONS), 0
    except TypeError:
        if context is not None:
            check_nesting(context)
        return json.dumps(message, default=str, separators=(",", ":")).encode(), JSON_MODULE


def frame(request_id: int, body: bytes, flag: int) -> bytes:
    return HEADER.pack(len(body) | flag, request_id) + body


def decode(body: bytes, flag: int) -> Any:
    return json.loads(body) if flag else orjson.loads(body)


def result_to_wire(result: SandboxResult) -> list[Any]:
    return [result.success, result.output, result.logs, result.error, result.execution_ms, result.session_id]


def result_from_wire(wire: list[Any]) -> SandboxResult:
    success, output, logs, error, execution_ms, session_id = wire
    return SandboxResult(
        success=success,
        output=output,
        logs=tuple(logs),
        error=error,
        execution_ms=execution_ms,
        session_id=session_id,
    )


def _run(code: str, language: str, context: Any, timeout_ms: int, expression: bool) -> SandboxRun:
    return SandboxRun(
        code=code, language=language, context=context, timeout_ms=timeout_ms, expression=expression
    )


class _Host:
    def __init__(self, sandbox: V8Sandbox, out: asyncio.WriteTransport) -> None:
        self.sandbox = sandbox
        self.out = out
        self.sessions: dict[str, tuple[AbstractAsyncContextManager[SandboxSession], SandboxSession]] = {}
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.stopping = False
        sandbox.on_stuck = self.stuck

    def stuck(self) -> None:
        if not self.out.is_closing():
            self.out.write(frame(0, *encode(["stuck"])))

    def send(self, request_id: int, message: Any) -> None:
        if request_id and not self.out.is_closing():
            self.out.write(frame(request_id, *encode(message)))

    async def serve(self, reader: asyncio.StreamReader) -> None:
        while not self.stopping:
            try:
                size, request_id = HEADER.unpack(await reader.readexactly(HEADER.size))
                body = await reader.readexactly(size & LENGTH)
            except (asyncio.IncompleteReadError, ConnectionError):
                return  # the parent closed our stdin (or went away)
            try:
                message = decode(body, size & JSON_MODULE)
            except Exception as exc:  # one request that cannot be read fails alone, not the process
                self.send(request_id, [None, type(exc).__name__])
                _complain(f"a request could not be read: {type(exc).__name__}")
                continue
            op = message[0]
            try:
                if op == "run":
                    task = asyncio.create_task(self._session_run(request_id, message[1], message[2:]))
                    self.tasks[request_id] = task
                    task.add_done_callback(lambda _, i=request_id: self.tasks.pop(i, None))
                elif op == "open":
                    await self._open(message[1], message[2])
                elif op == "close":
                    await self._close(message[1])
                elif op == "start":
                    session_id = await self.sandbox.start(_run(*message[1:]))
                    self.send(request_id, [session_id])
                elif op == "poll":
                    result = await self.sandbox.poll(message[1])
                    self.send(request_id, [None if result is None else result_to_wire(result)])
                elif op == "stop":
                    await self.sandbox.stop(message[1])
                elif op == "cancel":
                    running = self.tasks.get(message[1])
                    if running is not None:
                        running.cancel()
                elif op == "shutdown":
                    await self.shutdown()
                    self.send(request_id, [True])
                    return
                else:
                    self.send(request_id, [None, "UnknownOperation"])
            except Exception as exc:  # never the message: it may carry user data
                self.send(request_id, [None, type(exc).__name__])
                _complain(f"request {op!r} failed: {type(exc).__name__}")

    async def _open(self, session_id: str, scope: str | None) -> None:
        await self._close(session_id)
        manager = self.sandbox.session(scope)
        session = await manager.__aenter__()
        session.session_id = session_id  # type: ignore[attr-defined]  # results carry the parent's id
        self.sessions[session_id] = (manager, session)

    async def _close(self, session_id: str) -> None:
        entry = self.sessions.pop(session_id, None)
        if entry is not None:
            await entry[0].__aexit__(None, None, None)

    async def _session_run(self, request_id: int, session_id: str, fields: list[Any]) -> None:
        try:
            entry = self.sessions.get(session_id)
            if entry is None:
                result = SandboxResult(
                    success=False,
                    error={"message": "unknown sandbox session", "code": "SANDBOX_UNAVAILABLE"},
                    session_id=session_id,
                )
            else:
                result = await entry[1].run(_run(*fields))
            self.send(request_id, [result_to_wire(result)])
        except asyncio.CancelledError:
            pass  # the parent gave up on this run: it expects no answer
        except Exception as exc:
            self.send(request_id, [None, type(exc).__name__])
            _complain(f"a run failed: {type(exc).__name__}")

    async def shutdown(self) -> None:
        self.stopping = True
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_SHUTDOWN_GRACE_S):
                if tasks:
                    await asyncio.gather(*tasks, return_exceptions=True)
                for session_id in list(self.sessions):
                    await self._close(session_id)
                await self.sandbox.aclose()


def _complain(text: str) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(f"v8 sandbox host: {text}\n")
        sys.stderr.flush()


def _quiet_exceptions(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """asyncio's default handler prints exception messages (maybe user data): the type only."""
    exc = context.get("exception")
    _complain(f"unhandled {type(exc).__name__ if exc is not None else context.get('message', 'error')}")


async def _main(config: dict[str, Any], in_fd: int, out_fd: int) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet_exceptions)
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(in_fd, "rb", buffering=0)
    )
    out, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(out_fd, "wb", buffering=0))
    host = _Host(V8Sandbox(**config), out)
    try:
        await host.serve(reader)
    finally:
        if not host.stopping:
            await host.shutdown()
        # Let the last answers leave before the process ends.
        for _ in range(200):
            if out.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.005)


def main() -> None:
    # Nothing but frames on the protocol's stdout: anything else printed goes to stderr.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # The parent stops us (shutdown, or the end of stdin); a Ctrl-C meant for it is not for us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(Exception):  # no core dump of a crash: the memory holds tenants' data
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    config = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    code = 0
    try:
        run = asyncio.run
        with contextlib.suppress(ImportError):  # uvloop (uvicorn[standard]): cheaper per message
            import uvloop

            run = uvloop.run
        run(_main(config, 0, out_fd))
    except BaseException as exc:  # the type only: a traceback's messages may quote user data
        _complain(f"stopped by {type(exc).__name__}")
        code = 1
    sys.stderr.flush()
    # Isolates given up after a timeout may still be running on V8 threads: do not wait for them.
    os._exit(code)


if __name__ == "__main__":
    main()
