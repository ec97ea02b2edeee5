"""The secret box and the SQLite key file: several keys, re-encryption, refusals that say what
to do, a key file that is private and never read half-written."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bitbybit.config import Settings
from bitbybit.crypto import SecretBox, fernet_key, load_box
from bitbybit.errors import ConfigurationError

OLD = fernet_key("an old key")
NEW = fernet_key("a new key")


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_the_first_key_encrypts_and_any_key_decrypts() -> None:
    old_token = SecretBox([OLD]).seal("whsec_a")
    both = SecretBox([NEW, OLD])

    assert both.open(old_token) == "whsec_a"
    assert Fernet(NEW).decrypt(both.seal("whsec_b").encode()) == b"whsec_b"
    assert both.opens(old_token)
    assert not SecretBox([NEW]).opens(old_token)


def test_reseal_moves_a_token_onto_the_first_key_once() -> None:
    both = SecretBox([NEW, OLD])
    old_token = SecretBox([OLD]).seal("whsec_a")

    resealed = both.reseal(old_token)

    assert resealed is not None
    assert SecretBox([NEW]).open(resealed) == "whsec_a"
    assert both.reseal(resealed) is None
    with pytest.raises(ConfigurationError, match="BITBYBIT_SECRET_KEY does not hold"):
        SecretBox([NEW]).reseal(old_token)


def test_the_refusal_says_what_to_do() -> None:
    from_variable = str(SecretBox([NEW]).mismatch(2, 5))
    key_file = Path("/srv/bitbybit.db.key")
    from_file = str(SecretBox([NEW], key_file=key_file, generated=True).mismatch(5, 5))

    assert from_variable.startswith("BITBYBIT_SECRET_KEY cannot decrypt 2 of the 5 stored")
    assert "comma-separated" in from_variable
    assert "--reset-unreadable" in from_variable
    assert from_file.startswith(
        f"BITBYBIT_SECRET_KEY is not set and the key file {key_file} was generated just now"
    )
    assert "Put back the key file" in from_file


def test_the_key_file_is_private_also_in_a_new_directory(
    tmp_path: Path, permissive_umask: None
) -> None:
    database = tmp_path / "not" / "yet" / "there.db"

    box = load_box(Settings(database_url=f"sqlite:///{database}"))

    key_file = database.with_name("there.db.key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert box.key_file == key_file
    assert box.generated
    assert sorted(path.name for path in key_file.parent.iterdir()) == ["there.db.key"]
    again = load_box(Settings(database_url=f"sqlite:///{database}"))
    assert not again.generated
    assert again.open(box.seal("whsec_a")) == "whsec_a"


def test_processes_starting_together_share_one_whole_key(tmp_path: Path) -> None:
    """The key file appears with its content or not at all: nobody reads it half-written."""
    for attempt in range(20):
        settings = Settings(database_url=f"sqlite:///{tmp_path / f'{attempt}.db'}")
        with ThreadPoolExecutor(8) as pool:
            boxes = list(pool.map(load_box, [settings] * 8))
        token = boxes[0].seal("whsec_a")
        assert all(box.open(token) == "whsec_a" for box in boxes)
        assert sum(box.generated for box in boxes) == 1
