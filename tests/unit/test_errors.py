"""The error tree guarded, as httpx guards its own: every error bitbybit defines is in the tree
written at the top of ``bitbybit/errors.py``, under its real parent, and every domain error has an
HTTP status of its own in ``api/errors.py`` (no silent fallback to 400)."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

import bitbybit
from bitbybit import errors
from bitbybit.api import errors as api_errors
from bitbybit.errors import BitbybitError, DomainError, NotFound

TREE_LINE = re.compile(
    r"^ {4}(?P<indent>(?:[│ ] {3})*)(?:[├└]── )?(?P<name>[A-Z]\w*)\b(?P<rest>.*)$"
)
"""A tree line: four spaces, a ``│`` or space column per level above, the branch, the name."""
STATUS_NOTE = re.compile(r"\((\d{3})\)\s*$")


def _import_everything() -> None:
    """Import every module of bitbybit, so that ``__subclasses__`` sees every error class."""
    for module in pkgutil.walk_packages(bitbybit.__path__, "bitbybit."):
        if not module.name.endswith(".__main__"):  # it would run the command line
            importlib.import_module(module.name)


def _descendants(root: type[BaseException]) -> Iterator[type[BaseException]]:
    for child in root.__subclasses__():
        if child.__module__.startswith("bitbybit."):  # not the classes tests make
            yield child
            yield from _descendants(child)


def _parent(kind: type[BaseException]) -> str:
    """The class ``kind`` extends within the tree (its first base that is a BitbybitError)."""
    return next(base.__name__ for base in kind.__bases__ if issubclass(base, BitbybitError))


def _documented() -> dict[str, tuple[str | None, int | None]]:
    """The tree in ``errors.py``'s docstring: class name → (parent name, status written)."""
    assert errors.__doc__ is not None
    tree: dict[str, tuple[str | None, int | None]] = {}
    path: list[str] = []
    for line in errors.__doc__.splitlines():
        match = TREE_LINE.match(line)
        if match is None or (not tree and match["name"] != "BitbybitError"):
            continue
        depth = len(match["indent"]) // 4 + (1 if "──" in line else 0)
        del path[depth:]
        assert match["name"] not in tree, f"{match['name']} is in the tree twice"
        note = STATUS_NOTE.search(match["rest"])
        tree[match["name"]] = (path[-1] if path else None, int(note[1]) if note else None)
        path.append(match["name"])
    return tree


@pytest.fixture(scope="module")
def defined() -> dict[str, type[BaseException]]:
    _import_everything()
    kinds = [BitbybitError, *_descendants(BitbybitError)]
    names = [kind.__name__ for kind in kinds]
    assert len(set(names)) == len(names), f"two error classes share a name: {sorted(names)}"
    return dict(zip(names, kinds, strict=True))


def test_the_tree_is_read_as_written() -> None:
    """The parser itself: a few lines of the tree as they stand, so a drawing the parser no
    longer understands fails here rather than passing with an empty tree."""
    tree = _documented()
    assert tree["BitbybitError"] == (None, None)
    assert tree["DomainError"] == ("BitbybitError", 400)
    assert tree["AuthError"] == ("DomainError", 401)
    assert tree["StorageUnavailable"][0] == "StorageError"
    assert tree["ConfigurationError"] == ("BitbybitError", None)


def test_every_error_class_is_in_the_documented_tree(
    defined: dict[str, type[BaseException]],
) -> None:
    missing = sorted(set(defined) - set(_documented()))
    assert not missing, (
        f"add {missing} to the tree in the docstring of bitbybit/errors.py"
        f" (defined in {[defined[name].__module__ for name in missing]})"
    )


def test_the_documented_tree_names_only_classes_that_exist(
    defined: dict[str, type[BaseException]],
) -> None:
    ghosts = sorted(set(_documented()) - set(defined))
    assert not ghosts, f"bitbybit/errors.py's tree names {ghosts}, which no module defines"


def test_each_class_sits_under_its_real_parent(defined: dict[str, type[BaseException]]) -> None:
    wrong = {
        name: (parent, _parent(defined[name]))
        for name, (parent, _) in _documented().items()
        if parent is not None and name in defined and _parent(defined[name]) != parent
    }
    assert not wrong, f"the tree's parent differs from the class's (tree, code): {wrong}"


def test_every_domain_error_has_a_status_of_its_own(
    defined: dict[str, type[BaseException]],
) -> None:
    domain = [kind for kind in defined.values() if issubclass(kind, DomainError)]
    assert DomainError in domain
    unmapped = sorted(kind.__qualname__ for kind in domain if kind not in api_errors.STATUS)
    assert not unmapped, f"give {unmapped} an HTTP status in STATUS (bitbybit/api/errors.py)"
    strays = [kind for kind in api_errors.STATUS if kind not in domain]
    assert not strays, f"STATUS maps classes that are not bitbybit's domain errors: {strays}"


def test_the_statuses_written_in_the_tree_are_the_apis(
    defined: dict[str, type[BaseException]],
) -> None:
    """(A class missing from the tree or from ``STATUS`` fails the tests above.)"""
    tree = _documented()
    for name, kind in defined.items():
        if name not in tree:
            continue
        written = tree[name][1]
        if issubclass(kind, DomainError):
            assert written == api_errors.STATUS.get(kind), f"{name}: the tree and STATUS differ"
        else:
            assert written is None, f"{name} is not a domain error: STATUS gives it no status"


def test_a_subclass_does_not_inherit_its_parents_status() -> None:
    class Unmapped(NotFound):
        pass

    assert api_errors.status_of(NotFound("gone")) == 404
    with pytest.raises(LookupError, match="Unmapped has no HTTP status"):
        api_errors.status_of(Unmapped("gone"))


async def test_an_unmapped_domain_error_is_answered_500_not_400() -> None:
    """Not a guess at 400 the client would take for its own mistake: a logged 500."""

    class Unmapped(DomainError):
        pass

    app = FastAPI()
    api_errors.install(app)

    @app.get("/unmapped")
    async def unmapped() -> None:
        raise Unmapped("no status for this one")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/unmapped")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "INTERNAL_ERROR"
