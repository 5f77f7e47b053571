"""`tolstoy secrets rotate-key`: every stored credential re-encrypted, still readable, old key gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import make_settings
from tests.e2e.helpers import created
from tests.support import LiveServer, _run, new_org

TOLSTOY = str(Path(sys.executable).with_name("tolstoy"))


def test_rotate_key_on_the_embedded_default(tmp_path: Path) -> None:
    from entrypoints.container import build_container
    from entrypoints.rest.app import create_app

    database = f"sqlite:///{tmp_path / 'rotate.db'}"
    settings = make_settings(database, tmp_path, TOLSTOY_AUTO_MIGRATE="true")
    values = {}
    with LiveServer(create_app(build_container(settings))) as live:
        api = new_org(live.url)
        for i in range(3):
            tool = created(api.post("/tools", json={"name": f"T{i}", "baseUrl": "https://t.example.com"}))
            values[tool["id"]] = {"api_key": f"sk-rotate-me-{i:04d}-abcdef"}
            api.post(f"/tools/{tool['id']}/secrets", json={"credentials": values[tool["id"]]})
    key_file = tmp_path / "encryption-keys.json"
    before = json.loads(key_file.read_text())

    env = {k: v for k, v in os.environ.items() if not k.startswith("TOLSTOY_")}
    env |= {"DATABASE_URL": database, "TOLSTOY_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [TOLSTOY, "secrets", "rotate-key"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Re-encrypted 3 credential set(s)" in result.stderr

    after = json.loads(key_file.read_text())
    assert after["current"] != before["current"] and after["previous"] == []  # the old key is gone
    # every value still decrypts with the new key alone
    from adapters.persistence.engine import create_engine
    from adapters.secrets.keyring import load_keyring
    from adapters.secrets.local import LocalSecretStore

    async def read_all() -> dict:
        engine = create_engine(database)
        store = LocalSecretStore(engine, load_keyring(None, None, tmp_path))
        try:
            out = {}
            for tool_id in values:
                async with engine.connect() as conn:
                    org_id = (
                        await conn.exec_driver_sql("SELECT org_id FROM tools WHERE id = ?", (tool_id,))
                    ).scalar_one()
                out[tool_id] = await store.get(org_id, tool_id)
            return out
        finally:
            await engine.dispose()

    assert _run(read_all()) == values
