"""``bitbybit users create|list|set-password``: dashboard users from the command line (SPEC §10),
on both databases, checked by signing in to a live ``serve`` with what the commands made."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import httpx
import orjson

from tests.integration.servers import BITBYBIT, serve
from tests.integration.test_cli_messaging import ok, refused
from tests.integration.test_cli_operator import as_json, env  # noqa: F401  # the env fixture

PASSWORD = "correct horse battery staple"


def _signs_in(base_url: str, email: str, password: str) -> bool:
    with httpx.Client(base_url=base_url) as http:
        form = http.get("/dashboard/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert token is not None
        answer = http.post(
            "/dashboard/login",
            data={"csrf_token": token.group(1), "email": email, "password": password},
        )
        return answer.status_code == 303


def test_users_are_created_listed_and_sign_in(env: dict[str, str], tmp_path: Path) -> None:  # noqa: F811  # the fixture
    company = ok("companies", "create", "Acme", env=env)[0]
    (user_id,) = ok(
        "users", "create", "--company", company, "--email", "Ana@Example.com",
        "--password", PASSWORD, env=env,
    )  # fmt: skip
    assert user_id.startswith("user_")
    viewer = as_json(
        "users", "create", "--company", company, "--email", "vic@example.com",
        "--password", PASSWORD, "--role", "viewer", env=env,
    )  # fmt: skip
    assert set(viewer) == {"id"}
    rows = [line.split("\t") for line in ok("users", "list", "--company", company, env=env)]
    assert [(row[1], row[2]) for row in rows] == [
        ("ana@example.com", "admin"),
        ("vic@example.com", "viewer"),
    ]
    listed = as_json("users", "list", "--company", company, env=env)
    assert {user["email"] for user in listed} == {"ana@example.com", "vic@example.com"}

    refused(
        "users", "create", "--company", company, "--email", "ANA@example.com",
        "--password", PASSWORD, env=env, saying="exists already",
    )  # fmt: skip
    refused(
        "users", "create", "--company", company, "--email", "b@example.com",
        "--password", "short", env=env, saying="at least 10 characters",
    )  # fmt: skip
    refused(
        "users", "create", "--company", "comp_nope", "--email", "c@example.com",
        "--password", PASSWORD, env=env, saying="no company comp_nope",
    )  # fmt: skip
    refused(
        "users", "create", "--company", company, "--email", "d@example.com",
        "--password", PASSWORD, "--role", "owner", env=env, saying="admin, viewer",
    )  # fmt: skip

    with serve(env["BITBYBIT_DATABASE_URL"], tmp_path / "serve.log", **env) as server:
        assert _signs_in(server.base_url, "ana@example.com", PASSWORD)
        assert not _signs_in(server.base_url, "ana@example.com", "not the password")
        new = "a new long one!"
        ok("users", "set-password", "--email", "ana@example.com", "--password", new, env=env)
        assert not _signs_in(server.base_url, "ana@example.com", PASSWORD)
        assert _signs_in(server.base_url, "ana@example.com", new)


def test_the_password_is_asked_for_when_left_out(env: dict[str, str]) -> None:  # noqa: F811  # the fixture
    company = ok("companies", "create", "Acme", env=env)[0]
    done = subprocess.run(
        [*BITBYBIT, "users", "create", "--company", company, "--email", "p@example.com", "--json"],
        env=env,
        input=f"{PASSWORD}\n{PASSWORD}\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr  # hidden input: never echoed
    # The prompts go to the terminal (standard output); the JSON document follows them.
    assert orjson.loads(done.stdout[done.stdout.index("{") :])["id"].startswith("user_")
