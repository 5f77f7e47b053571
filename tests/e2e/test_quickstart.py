"""The README's quick start, run verbatim against a fresh `tolstoy serve` process.

Also the CLI around it: admin-token generation, start-up migration on the embedded default,
explicit `tolstoy migrate` on PostgreSQL, and a clean stop on SIGTERM.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support import IN_CI, REDIS_URL, free_port, throwaway_postgres_database

ROOT = Path(__file__).resolve().parents[2]
TOLSTOY = str(Path(sys.executable).with_name("tolstoy"))


def quickstart_script(base_url: str) -> str:
    readme = (ROOT / "README.md").read_text()
    block = re.search(
        r"<!-- quickstart:start -->\s*```bash\n(.*?)```\s*<!-- quickstart:end -->", readme, re.S
    )
    assert block, "README.md lost its quick start block"
    return "set -euo pipefail\n" + block.group(1).replace("http://localhost:3000", base_url)


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DIRECT_URL", "TOLSTOY_ADMIN_TOKEN")
    }
    env.update(LOG_LEVEL="info", **extra)
    return env


@contextmanager
def tolstoy_serve(cwd: Path, **env: str) -> Iterator[tuple[str, subprocess.Popen]]:
    port = free_port()
    process = subprocess.Popen(
        [TOLSTOY, "serve"],
        cwd=cwd,
        env=_env(PORT=str(port), **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError("tolstoy serve exited:\n" + process.stdout.read())
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("tolstoy serve did not become healthy in 30 s")
            time.sleep(0.1)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def stop(process: subprocess.Popen) -> str:
    """SIGTERM: in-flight work finishes, the lifespan closes the pool, then the process exits by
    the signal it received (uvicorn re-raises it, so supervisors see why it stopped)."""
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=20)
    assert process.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output, output
    return output


@pytest.fixture
def jq() -> None:
    if shutil.which("jq") is None:
        if IN_CI:
            pytest.fail("jq is needed by the README quick start")
        pytest.skip("jq is not installed")


def test_quickstart_on_the_embedded_default(tmp_path: Path, jq: None) -> None:
    with tolstoy_serve(tmp_path) as (url, process):
        token_file = tmp_path / ".tolstoy" / "admin-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        result = subprocess.run(
            ["bash", "-c", quickstart_script(url)], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert '"name":"Create Jira Ticket"' in result.stdout and '"status":"ok"' in result.stdout
        assert (
            '"outputs":{"shape":{"title":"DISK FULL ON DB-1"},"wait":{"delayed":500},"page":{"result":true}}'
            in result.stdout
        )
        assert (
            '"outputs":{"shape":{"title":"CPU HOT"},"wait":{"delayed":500},"page":{"result":false}}'
            in result.stdout
        )
        # default body limit is 1 MiB
        big = httpx.post(f"{url}/organizations", content=b"x" * (1024 * 1024 + 1))
        assert big.status_code == 413
        output = stop(process)
    assert "Tolstoy generated an admin token" in output and "cat .tolstoy/admin-token" in output
    assert token not in output  # instructions, never the token itself

    # A restart keeps the token and the data, and says nothing about tokens again.
    with tolstoy_serve(tmp_path) as (url, process):
        assert token_file.read_text().strip() == token
        orgs = httpx.get(f"{url}/organizations", headers={"Authorization": f"Bearer {token}"}).json()
        assert [o["name"] for o in orgs] == ["My Organization"]
        output = stop(process)
    assert "generated an admin token" not in output


@pytest.mark.postgres
def test_quickstart_on_postgres_after_tolstoy_migrate(tmp_path: Path, jq: None) -> None:
    with throwaway_postgres_database("tolstoy_quickstart") as database_url:
        # Not migrated yet: serve refuses, and says what to do.
        refused = subprocess.run(
            [TOLSTOY, "serve"], cwd=tmp_path, env=_env(DATABASE_URL=database_url, PORT=str(free_port())),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert refused.returncode != 0 and "tolstoy migrate" in refused.stdout + refused.stderr
        # So do workers (one, or several processes): their statements need this code's schema.
        for processes in ("1", "2"):
            refused = subprocess.run(
                [TOLSTOY, "worker", "--processes", processes], cwd=tmp_path,
                env=_env(DATABASE_URL=database_url, REDIS_URL=REDIS_URL), capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert refused.returncode != 0 and "tolstoy migrate" in refused.stdout + refused.stderr
            assert "Traceback" not in refused.stderr

        migrated = subprocess.run(
            [TOLSTOY, "migrate"], cwd=tmp_path, env=_env(DIRECT_URL=database_url, DATABASE_URL="postgresql://nowhere/x"),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert migrated.returncode == 0, migrated.stderr

        (tmp_path / ".tolstoy").mkdir()
        (tmp_path / ".tolstoy" / "admin-token").write_text("pg-admin-token\n")
        with tolstoy_serve(tmp_path, DATABASE_URL=database_url, TOLSTOY_ADMIN_TOKEN="pg-admin-token") as (
            url,
            process,
        ):
            result = subprocess.run(
                ["bash", "-c", quickstart_script(url)],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert result.returncode == 0, result.stdout + result.stderr
            detailed = httpx.get(f"{url}/status/detailed").json()
            assert detailed["database"]["recordCounts"]["organizations"] == 1
            stop(process)


@pytest.mark.postgres
def test_without_an_admin_token_postgres_disables_organization_management(tmp_path: Path) -> None:
    with throwaway_postgres_database("tolstoy_noadmin") as database_url:
        env = {"DATABASE_URL": database_url, "TOLSTOY_AUTO_MIGRATE": "true"}
        with tolstoy_serve(tmp_path, **env) as (url, process):
            response = httpx.post(
                f"{url}/organizations", json={"name": "x"}, headers={"Authorization": "Bearer x"}
            )
            assert response.status_code == 401
            output = stop(process)
        assert "TOLSTOY_ADMIN_TOKEN is not set" in output
        assert not (tmp_path / ".tolstoy" / "admin-token").exists()
