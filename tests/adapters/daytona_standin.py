"""A local stand-in for the Daytona API and the sandbox toolbox, for the DaytonaSandbox tests.

It implements only what the ``daytona`` SDK calls on the adapter's paths:

* API (``/api``): ``POST /sandbox``, ``GET /sandbox/{id}``, ``DELETE /sandbox/{id}``,
  ``GET /sandbox/{id}/toolbox-proxy-url``;
* toolbox (``/toolbox/{sandboxId}``, the ``toolboxProxyUrl`` every sandbox carries):
  ``POST /process/code-run``, ``POST /process/execute``, ``POST /process/session``,
  ``POST /process/session/{sid}/exec``, ``GET /process/session/{sid}/command/{cid}[/logs]``,
  ``DELETE /process/session/{sid}``, ``POST /files/bulk-upload``.

Code "runs" on this machine, like the Daytona daemon runs it: code-run feeds the program to
``python3 -u -`` (this interpreter) or ``node -`` on stdin; execute splits the command the way the
daemon does (quotes, no shell) and runs it; session commands run under ``sh -c``. A timeout kills
the process group and answers 408. Emulation, not isolation: use it with trusted test code only.

Every request must carry ``Authorization: Bearer <api_key>``; a wrong key gets a 401 whose message
echoes the key it was given (a careless server), so tests can check the adapter scrubs it.
The server runs on 127.0.0.1, on a free port, in a thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import shutil
import signal
import socket
import sys
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, web


@dataclass
class _Command:
    id: str
    command: str
    process: asyncio.subprocess.Process | None = None
    exit_code: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""


@dataclass
class _Sandbox:
    dto: dict[str, Any]
    sessions: dict[str, dict[str, _Command]] = field(default_factory=dict)
    processes: set[asyncio.subprocess.Process] = field(default_factory=set)
    paths: set[str] = field(default_factory=set)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


def _split(command: str) -> list[str]:
    """The daemon's parseCommand: split on spaces outside single or double quotes, drop the quotes."""
    args: list[str] = []
    current: list[str] = []
    quote = ""
    for ch in command:
        if ch in "\"'":
            if not quote:
                quote = ch
            elif quote == ch:
                quote = ""
            else:
                current.append(ch)
        elif ch == " " and not quote:
            if current:
                args.append("".join(current))
                current = []
        else:
            current.append(ch)
    if current:
        args.append("".join(current))
    return args


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


class DaytonaStandIn:
    def __init__(self, api_key: str = "standin-key") -> None:
        self.api_key = api_key
        self.sandboxes: dict[str, _Sandbox] = {}
        self.created: list[dict[str, Any]] = []  # the bodies of POST /sandbox
        self.deleted: list[str] = []
        self.start_state = "started"  # "starting": new sandboxes never start (a create that times out)
        self.requests: list[tuple[str, str]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.base}/api"

    # -- lifecycle --

    def start(self) -> DaytonaStandIn:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def serve() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=serve, name="daytona-standin", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the Daytona stand-in did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
        self._loop = None

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._auth], client_max_size=64 * 1024 * 1024)
        api = "/api/sandbox"
        box = "/toolbox/{sandbox}"
        app.add_routes(
            [
                web.post(api, self.create_sandbox),
                web.get(api + "/{sandbox}", self.get_sandbox),
                web.delete(api + "/{sandbox}", self.delete_sandbox),
                web.get(api + "/{sandbox}/toolbox-proxy-url", self.toolbox_proxy_url),
                web.post(box + "/process/code-run", self.code_run),
                web.post(box + "/process/execute", self.execute),
                web.post(box + "/process/session", self.create_session),
                web.delete(box + "/process/session/{session}", self.delete_session),
                web.post(box + "/process/session/{session}/exec", self.session_exec),
                web.get(box + "/process/session/{session}/command/{command}", self.get_command),
                web.get(box + "/process/session/{session}/command/{command}/logs", self.command_logs),
                web.post(box + "/files/bulk-upload", self.upload),
            ]
        )
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.SockSite(self._runner, self._sock).start()

    async def _shutdown(self) -> None:
        for sandbox_id in list(self.sandboxes):
            self._destroy(sandbox_id)
        if self._runner is not None:
            await self._runner.cleanup()

    # -- helpers --

    @staticmethod
    def _error(status: int, message: str, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "statusCode": status,
                "message": message,
                "code": {401: "UNAUTHORIZED", 404: "NOT_FOUND", 408: "REQUEST_TIMEOUT"}.get(
                    status, "BAD_REQUEST"
                ),
                "path": request.path,
                "method": request.method,
                "timestamp": datetime.datetime.now(datetime.UTC).isoformat(),
            },
            status=status,
        )

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        header = request.headers.get("Authorization", "")
        if header != f"Bearer {self.api_key}":
            token = header.removeprefix("Bearer ")
            return self._error(401, f"Invalid API key: {token}", request)
        return await handler(request)

    def _sandbox(self, request: web.Request) -> _Sandbox | None:
        sandbox = self.sandboxes.get(request.match_info["sandbox"])
        if sandbox is None or sandbox.dto["state"] != "started":
            return None
        return sandbox

    def _destroy(self, sandbox_id: str) -> None:
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None:
            return
        sandbox.dto["state"] = "destroyed"
        for process in sandbox.processes:
            _kill(process)
        for path in sandbox.paths:
            shutil.rmtree(path, ignore_errors=True)

    async def _spawn(
        self, sandbox: _Sandbox, args: list[str], stdin: bytes | None, *, merge: bool
    ) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if merge else asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        sandbox.processes.add(process)
        return process

    async def _run(
        self,
        request: web.Request,
        sandbox: _Sandbox,
        args: list[str],
        stdin: bytes | None,
        timeout: int | None,
    ) -> web.Response:
        try:
            process = await self._spawn(sandbox, args, stdin, merge=True)
        except OSError as exc:
            return web.json_response({"exitCode": -1, "result": str(exc)})
        try:
            output, _ = await asyncio.wait_for(process.communicate(stdin), timeout or None)
        except TimeoutError:
            _kill(process)
            await process.wait()
            return self._error(408, "command execution timeout", request)
        finally:
            sandbox.processes.discard(process)
        return web.json_response(
            {"exitCode": process.returncode, "result": output.decode("utf-8", "replace")}
        )

    # -- API --

    async def create_sandbox(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.created.append(body)
        sandbox_id = str(uuid.uuid4())
        now = datetime.datetime.now(datetime.UTC).isoformat()
        dto = {
            "id": sandbox_id,
            "organizationId": "standin-org",
            "name": body.get("name") or sandbox_id,
            "snapshot": body.get("snapshot"),
            "user": "daytona",
            "env": body.get("env") or {},
            "labels": body.get("labels") or {},
            "public": False,
            "networkBlockAll": False,
            "kvm": False,
            "target": "local",
            "cpu": 1,
            "gpu": 0,
            "memory": 1,
            "disk": 3,
            "state": self.start_state,
            "autoStopInterval": body.get("autoStopInterval"),
            "autoDeleteInterval": body.get("autoDeleteInterval"),
            "createdAt": now,
            "updatedAt": now,
            "toolboxProxyUrl": f"{self.base}/toolbox",
        }
        self.sandboxes[sandbox_id] = _Sandbox(dto=dto)
        return web.json_response(dto)

    async def get_sandbox(self, request: web.Request) -> web.Response:
        sandbox = self.sandboxes.get(request.match_info["sandbox"])
        if sandbox is None or sandbox.dto["state"] == "destroyed":
            return self._error(404, "Sandbox not found", request)
        return web.json_response(sandbox.dto)

    async def delete_sandbox(self, request: web.Request) -> web.Response:
        sandbox_id = request.match_info["sandbox"]
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None or sandbox.dto["state"] == "destroyed":
            return self._error(404, "Sandbox not found", request)
        self._destroy(sandbox_id)
        self.deleted.append(sandbox_id)
        return web.json_response(sandbox.dto)

    async def toolbox_proxy_url(self, request: web.Request) -> web.Response:
        if self.sandboxes.get(request.match_info["sandbox"]) is None:
            return self._error(404, "Sandbox not found", request)
        return web.json_response({"url": f"{self.base}/toolbox"})

    # -- toolbox --

    async def code_run(self, request: web.Request) -> web.Response:
        sandbox = self._sandbox(request)
        if sandbox is None:
            return self._error(404, "Sandbox not found", request)
        body = await request.json()
        language = body.get("language")
        code = body.get("code", "")
        if language == "python":
            args = [sys.executable, "-u", "-"]
        elif language == "javascript" and shutil.which("node"):
            args = ["node", "-"]
            code = "process.argv.splice(1, 1);\n" + code
        else:
            return self._error(400, f"unsupported language: {language}", request)
        return await self._run(request, sandbox, args, code.encode("utf-8"), body.get("timeout"))

    async def execute(self, request: web.Request) -> web.Response:
        sandbox = self._sandbox(request)
        if sandbox is None:
            return self._error(404, "Sandbox not found", request)
        body = await request.json()
        args = _split(body.get("command", ""))
        if not args:
            return self._error(400, "empty command", request)
        return await self._run(request, sandbox, args, None, body.get("timeout") or 360)

    async def create_session(self, request: web.Request) -> web.Response:
        sandbox = self._sandbox(request)
        if sandbox is None:
            return self._error(404, "Sandbox not found", request)
        session_id = (await request.json())["sessionId"]
        if session_id in sandbox.sessions:
            return self._error(409, "session already exists", request)
        sandbox.sessions[session_id] = {}
        return web.Response(status=201)

    async def delete_session(self, request: web.Request) -> web.Response:
        sandbox = self._sandbox(request)
        commands = sandbox.sessions.pop(request.match_info["session"], None) if sandbox else None
        if commands is None:
            return self._error(404, "session not found", request)
        for command in commands.values():
            if command.process is not None:
                _kill(command.process)
        return web.Response(status=204)

    async def session_exec(self, request: web.Request) -> web.Response:
        sandbox = self._sandbox(request)
        session = sandbox.sessions.get(request.match_info["session"]) if sandbox else None
        if sandbox is None or session is None:
            return self._error(404, "session not found", request)
        body = await request.json()
        command = _Command(id=str(uuid.uuid4()), command=body["command"])
        session[command.id] = command
        command.process = await self._spawn(sandbox, ["sh", "-c", command.command], None, merge=False)

        async def finish() -> None:
            assert command.process is not None
            command.stdout, command.stderr = await command.process.communicate()
            command.exit_code = command.process.returncode
            sandbox.processes.discard(command.process)

        task = asyncio.create_task(finish())
        sandbox.tasks.add(task)
        task.add_done_callback(sandbox.tasks.discard)
        if body.get("runAsync") or body.get("async"):
            return web.json_response({"cmdId": command.id}, status=202)
        await task
        output = (command.stdout + command.stderr).decode("utf-8", "replace")
        return web.json_response({"cmdId": command.id, "output": output, "exitCode": command.exit_code})

    def _command(self, request: web.Request) -> _Command | None:
        sandbox = self._sandbox(request)
        session = sandbox.sessions.get(request.match_info["session"]) if sandbox else None
        return session.get(request.match_info["command"]) if session is not None else None

    async def get_command(self, request: web.Request) -> web.Response:
        command = self._command(request)
        if command is None:
            return self._error(404, "command not found", request)
        return web.json_response(
            {"id": command.id, "command": command.command, "exitCode": command.exit_code}
        )

    async def command_logs(self, request: web.Request) -> web.Response:
        command = self._command(request)
        if command is None:
            return self._error(404, "command not found", request)
        stdout = command.stdout.decode("utf-8", "replace")
        stderr = command.stderr.decode("utf-8", "replace")
        return web.json_response({"output": stdout + stderr, "stdout": stdout, "stderr": stderr})

    async def upload(self, request: web.Request) -> web.Response:
        sandbox = self._sandbox(request)
        if sandbox is None:
            return self._error(404, "Sandbox not found", request)
        reader = await request.multipart()
        paths: dict[str, str] = {}  # files[i] -> destination, from the files[i].path fields
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            name = part.name or ""
            if name.endswith(".path"):
                paths[name.removesuffix(".path")] = (await part.read()).decode("utf-8")
                continue
            if not name.endswith(".file"):
                continue
            path = paths.get(name.removesuffix(".file")) or unquote(part.filename or "")
            if not path.startswith("/tmp/tolstoy-"):
                return self._error(400, f"the stand-in only writes under /tmp/tolstoy-*: {path}", request)
            directory = os.path.dirname(path)
            os.makedirs(directory, exist_ok=True)
            sandbox.paths.add(directory)
            with open(path, "wb") as f:
                f.write(await part.read())
        return web.json_response({"errors": []})
