"""The operator's admin token: from TOLSTOY_ADMIN_TOKEN, or generated once for the embedded default."""

from __future__ import annotations

import logging
import os
import secrets
import sys
from pathlib import Path

from entrypoints.settings import Settings

log = logging.getLogger("tolstoy")

FILE_NAME = "admin-token"


def resolve_admin_token(settings: Settings) -> str | None:
    if settings.admin_token is not None and settings.admin_token.get_secret_value():
        return settings.admin_token.get_secret_value()
    if not settings.embedded:
        log.warning("TOLSTOY_ADMIN_TOKEN is not set: organization management is disabled")
        return None
    return _token_file(settings.data_dir / FILE_NAME, settings.port)


def _token_file(path: Path, port: int) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = "tadm_" + secrets.token_urlsafe(32)
    # Created with 0600 from the start: never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    print(
        f"\nTolstoy generated an admin token and saved it in {path} (mode 0600).\n"
        "Create an organization with it:\n"
        f'  curl -X POST http://localhost:{port}/organizations -H "Authorization: Bearer $(cat {path})" '
        "-H 'Content-Type: application/json' -d '{\"name\":\"My Organization\"}'\n",
        file=sys.stderr,
        flush=True,
    )
    return token
