"""Signing secrets at rest: encrypted with Fernet under ``BITBYBIT_SECRET_KEY``.

Signing secrets must be recoverable to sign with, so they are encrypted, not hashed. Several keys
may be given comma-separated: the first encrypts, every one decrypts (key rotation; ``reseal``
moves a stored secret onto the first key). Without a key, SQLite deployments get one generated
once into a 0600 file beside the database (with a warning); PostgreSQL deployments, whose nodes
must share the key, refuse to start.

A key that cannot decrypt what the database holds is a configuration error found at start
(``runtime.Platform.check_secret_key``), not at the first delivery: there every attempt
would fail, use up its retries and suspend its endpoint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
from pathlib import Path

import structlog
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bitbybit.config import Settings
from bitbybit.errors import ConfigurationError

log = structlog.get_logger("bitbybit.crypto")

ROTATION_HINT = (
    "several keys may be given comma-separated: the first encrypts, any decrypts"
    " (docs/operations.md, 'Rotating the secret key')"
)
LOST_KEY_HINT = (
    "if that key is lost, `bitbybit secrets rotate --reset-unreadable` gives the endpoints"
    " concerned new secrets"
)


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
    """Seals signing secrets with the first key and opens them with any of the keys."""

    def __init__(
        self, keys: list[bytes], *, key_file: Path | None = None, generated: bool = False
    ) -> None:
        if not keys:
            raise ConfigurationError("at least one secret key is needed")
        self.key_file = key_file
        """The file the key came from when ``BITBYBIT_SECRET_KEY`` is not set (SQLite)."""
        self.generated = generated
        """Whether this process generated ``key_file`` (it did not exist)."""
        try:
            self._first = Fernet(keys[0])
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except ValueError as error:  # only a key file can hold a malformed key
            raise ConfigurationError(
                f"{self._source()} holds no valid Fernet key: {error}"
            ) from None

    def _source(self) -> str:
        if self.key_file is None:
            return "BITBYBIT_SECRET_KEY"
        return f"the key file {self.key_file} (used because BITBYBIT_SECRET_KEY is not set)"

    def seal(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise self._unreadable() from None

    def _unreadable(self) -> ConfigurationError:
        return ConfigurationError(
            f"a stored signing secret cannot be decrypted: {self._source()} does not hold"
            " the key it was encrypted with"
        )

    def opens(self, token: str) -> bool:
        """Whether one of the keys decrypts ``token``."""
        try:
            self._fernet.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def reseal(self, token: str) -> str | None:
        """``token`` encrypted afresh with the first key; None when the first key made it.

        Raises ``ConfigurationError`` when no key decrypts it.
        """
        try:
            self._first.decrypt(token.encode())
        except InvalidToken:
            pass
        else:
            return None
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken:
            raise self._unreadable() from None

    def mismatch(self, unreadable: int, checked: int) -> ConfigurationError:
        """The refusal to start when stored secrets do not decrypt: what is wrong, what to do."""
        found = (
            f"cannot decrypt {unreadable} of the {checked} stored secrets checked in the database"
            " (webhook signing secrets, WhatsApp access tokens and app secrets): they were"
            " encrypted with another key."
        )
        if self.key_file is None:
            return ConfigurationError(
                f"BITBYBIT_SECRET_KEY {found} Set BITBYBIT_SECRET_KEY to the key they were"
                f" encrypted with ({ROTATION_HINT}); {LOST_KEY_HINT}"
            )
        made = " was generated just now (it was missing) and" if self.generated else ""
        return ConfigurationError(
            f"BITBYBIT_SECRET_KEY is not set and the key file {self.key_file}{made} {found}"
            " Put back the key file they were encrypted with (from a backup), or set"
            f" BITBYBIT_SECRET_KEY to that key; {LOST_KEY_HINT}"
        )


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
    generated = not path.exists() and _create_key_file(path)
    return SecretBox([path.read_bytes().strip()], key_file=path, generated=generated)


def _create_key_file(path: Path) -> bool:
    """Write a new key to ``path`` (mode 0600 whatever the umask); False if another process did.

    The key is written to a private temporary file first and then linked into place, so that a
    process starting at the same moment never reads a half-written (empty) key file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}.", suffix=".tmp")
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(Fernet.generate_key())
        os.link(temporary, path)
    except FileExistsError:
        return False  # another process made it first
    finally:
        os.unlink(temporary)
    log.warning(
        "generated_secret_key",
        path=str(path),
        hint="set BITBYBIT_SECRET_KEY to manage the key yourself; back this file up",
    )
    return True
