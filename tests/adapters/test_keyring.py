"""AES-GCM keyring of the local secret store: key file, binding to tenant and tool, rotation."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from adapters.secrets.keyring import Keyring, KeyringError, load_keyring, new_key


def test_a_key_file_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    first = load_keyring(None, None, tmp_path)
    path = tmp_path / "encryption-keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_keyring(None, None, tmp_path).current == first.current


def test_round_trip_and_binding_to_organization_and_tool(tmp_path: Path) -> None:
    keyring = load_keyring(None, None, tmp_path)
    token = keyring.encrypt(b"sk-1234567890abcdef", "org_a/tool_1")
    assert b"sk-1234567890abcdef" not in token.encode() and keyring.key_id_of(token) == keyring.current_id
    assert keyring.decrypt(token, "org_a/tool_1") == b"sk-1234567890abcdef"
    for context in ("org_b/tool_1", "org_a/tool_2"):
        with pytest.raises(KeyringError):
            keyring.decrypt(token, context)  # a row moved to another tenant or tool does not open


def test_tampering_is_detected(tmp_path: Path) -> None:
    keyring = load_keyring(None, None, tmp_path)
    version, kid, nonce, sealed = keyring.encrypt(b"value", "c").split(".")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    for broken in (
        f"{version}.{kid}.{nonce}.{flipped}",
        "v1.x.y",
        "v9.a.b.c",
        f"{version}.nokey.{nonce}.{sealed}",
    ):
        with pytest.raises(KeyringError):
            keyring.decrypt(broken, "c")


def test_rotation_keeps_old_ciphertexts_readable_and_persists(tmp_path: Path) -> None:
    old = load_keyring(None, None, tmp_path)
    token = old.encrypt(b"v", "c")
    rotated = old.rotated()
    rotated.save()
    assert rotated.current_id != old.current_id and rotated.decrypt(token, "c") == b"v"
    assert rotated.key_id_of(rotated.encrypt(b"v", "c")) == rotated.current_id
    reloaded = load_keyring(None, None, tmp_path)
    assert reloaded.current == rotated.current and reloaded.decrypt(token, "c") == b"v"
    # once every row is re-encrypted the previous key can go; an old token then fails clearly
    with pytest.raises(KeyringError, match="No key with id"):
        Keyring(rotated.current).decrypt(token, "c")


def test_keys_from_the_environment(tmp_path: Path) -> None:
    current, previous = new_key(), new_key()
    env = base64.b64encode(current).decode()
    keyring = load_keyring(env, base64.b64encode(previous).decode(), tmp_path)
    assert keyring.current == current and keyring.previous == [previous]
    assert not (tmp_path / "encryption-keys.json").exists()
    with pytest.raises(KeyringError, match="32 bytes"):
        load_keyring("too-short", None, tmp_path)


def test_an_unreadable_key_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "encryption-keys.json").write_text("{not json")
    with pytest.raises(KeyringError, match="unreadable"):
        load_keyring(None, None, tmp_path)
