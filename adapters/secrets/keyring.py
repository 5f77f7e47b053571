"""AES-256-GCM encryption keys for the local secret store, with rotation.

Every ciphertext is ``v1.<key id>.<nonce>.<ciphertext+tag>`` (base64url parts): it names the key
that made it, so old rows stay readable while ``tolstoy secrets rotate-key`` re-encrypts them.
The associated data binds a ciphertext to its organization and tool: a row copied to another
tenant or tool fails to decrypt instead of leaking.

Keys come from ``TOLSTOY_ENCRYPTION_KEY`` (base64 of 32 bytes; previous keys for rotation in
``TOLSTOY_PREVIOUS_ENCRYPTION_KEYS``, comma-separated), or from a key file in the data directory
that Tolstoy creates with mode 0600 on first use.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12


class KeyringError(Exception):
    """A key is missing, malformed, or a ciphertext does not decrypt. Never carries key material."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"tolstoy-key-id:" + key).hexdigest()[:12]


def parse_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip() + "=" * (-len(text.strip()) % 4), altchars=b"-_", validate=False)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise KeyringError(
            "An encryption key must be 32 bytes, base64-encoded (e.g. `openssl rand -base64 32`)"
        )
    return key


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


@dataclass
class Keyring:
    current: bytes
    previous: list[bytes] = field(default_factory=list)
    path: Path | None = None  # the key file it came from, if any

    @property
    def current_id(self) -> str:
        return key_id(self.current)

    def _key(self, wanted: str) -> bytes:
        for key in (self.current, *self.previous):
            if key_id(key) == wanted:
                return key
        raise KeyringError(f"No key with id {wanted} is configured: was a previous key dropped too early?")

    def encrypt(self, plaintext: bytes, context: str) -> str:
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self.current).encrypt(nonce, plaintext, context.encode())
        return ".".join((VERSION, self.current_id, _b64(nonce), _b64(sealed)))

    def decrypt(self, token: str, context: str) -> bytes:
        try:
            version, kid, nonce, sealed = token.split(".")
        except ValueError:
            raise KeyringError("Malformed ciphertext") from None
        if version != VERSION:
            raise KeyringError(f"Unknown ciphertext version {version}")
        try:
            return AESGCM(self._key(kid)).decrypt(_unb64(nonce), _unb64(sealed), context.encode())
        except (InvalidTag, ValueError):
            raise KeyringError(
                "Ciphertext does not decrypt (wrong key, or it was moved or altered)"
            ) from None

    def key_id_of(self, token: str) -> str:
        return token.split(".")[1] if token.count(".") == 3 else ""

    # --- the key file ----------------------------------------------------------------------------

    def save(self) -> None:
        assert self.path is not None
        data = {"current": _b64(self.current), "previous": [_b64(k) for k in self.previous]}
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, self.path)  # atomic: a crash leaves the old file or the new, never half

    def rotated(self) -> Keyring:
        """A keyring with a fresh current key that can still read everything this one could."""
        return Keyring(new_key(), [self.current, *self.previous], self.path)


def load_keyring(env_key: str | None, env_previous: str | None, data_dir: Path) -> Keyring:
    if env_key:
        previous = [parse_key(k) for k in (env_previous or "").split(",") if k.strip()]
        return Keyring(parse_key(env_key), previous)
    path = data_dir / "encryption-keys.json"
    if path.exists():
        try:
            data = json.loads(path.read_text())
            return Keyring(parse_key(data["current"]), [parse_key(k) for k in data.get("previous", [])], path)
        except (ValueError, KeyError, TypeError) as exc:
            raise KeyringError(f"The key file {path} is unreadable: {type(exc).__name__}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    keyring = Keyring(new_key(), [], path)
    keyring.save()
    return keyring
