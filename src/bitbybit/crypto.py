"""Signing secrets at rest: encrypted with Fernet under ``BITBYBIT_SECRET_KEY``.

Signing secrets must be recoverable to sign with, so they are encrypted, not hashed. Several keys
may be given comma-separated: the first encrypts, every one decrypts (key rotation). Without a
key, SQLite deployments get one generated once into a 0600 file beside the database (with a
warning); PostgreSQL deployments, whose nodes must share the key, refuse to start.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bitbybit.config import Settings
from bitbybit.errors import ConfigurationError

log = structlog.get_logger("bitbybit.crypto")


def fernet_key(material: str) -> bytes:
    """A Fernet key as given, or one derived from any other text with SHA-256."""
    raw = material.strip().encode()
    try:
        if len(base64.urlsafe_b64decode(raw)) == 32:
            return raw
    except (binascii.Error, ValueError):
        pass
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest())


class SecretBox:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ConfigurationError("at least one secret key is needed")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def seal(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ConfigurationError(
                "a stored signing secret cannot be decrypted: BITBYBIT_SECRET_KEY does not"
                " match the key it was encrypted with"
            ) from None


def key_file_for(database_url: str) -> Path:
    from bitbybit.store.sqlite import database_path

    return Path(database_path(database_url) + ".key")


def load_box(settings: Settings) -> SecretBox:
    if settings.secret_key:
        return SecretBox([fernet_key(part) for part in settings.secret_key.split(",") if part])
    if not settings.database_url.startswith("sqlite:"):
        raise ConfigurationError(
            "BITBYBIT_SECRET_KEY is required with PostgreSQL: every node must encrypt and"
            " decrypt webhook secrets with the same key (any long random text will do)"
        )
    path = key_file_for(settings.database_url)
    if not path.exists():
        key = Fernet.generate_key()
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(descriptor, "wb") as out:
                out.write(key)
            log.warning(
                "generated_secret_key",
                path=str(path),
                hint="set BITBYBIT_SECRET_KEY to manage the key yourself; back this file up",
            )
    return SecretBox([path.read_bytes().strip()])
