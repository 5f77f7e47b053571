"""The README's gRPC client example runs against a live server as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support import ADMIN_TOKEN, LiveServer

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_python_client_runs(server: LiveServer) -> None:
    section = README.read_text().split("## gRPC\n", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    env = {**os.environ, "TOLSTOY_GRPC": server.grpc_target, "TOLSTOY_ADMIN_TOKEN": ADMIN_TOKEN}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, cwd=README.parent
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["EXECUTION_EVENT_TYPE_FLOW_STARTED -", "EXECUTION_EVENT_TYPE_STEP_STARTED greet"]
    assert "EXECUTION_EVENT_TYPE_FLOW_COMPLETED -" in lines and "hi ada" in lines
    assert "StatusCode.INVALID_ARGUMENT Validation failed" in lines
    assert any(line.startswith("name too_small") for line in lines), lines
