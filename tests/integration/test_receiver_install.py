"""The receiver library installs alone, with the one pip command the guide documents.

A clean virtual environment is made in ``tmp_path``; the ``install`` sample of
``docs/receiving-webhooks.md`` runs in it exactly as written (from the repository's root, the
venv first on ``PATH``). Then ``pip list`` must show ``bitbybit-webhooks`` and nothing else but
pip and setuptools, the distribution must ship only ``bitbybit/webhooks`` (no
``bitbybit/__init__.py`` that would shadow the server's), and the guide's ``verify`` sample (the
golden vector) must print the same thing there as in the server's own environment.

pip fetches the build backend (hatchling) from the package index: this test needs it reachable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.integration.test_receiver_samples import ROOT, extract

GOLDEN_OUTPUT = "customer.created evt_golden john@example.com\n"


def clean_environment(venv: Path) -> dict[str, str]:
    """This process's environment minus anything that would leak the project's packages in."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV"}
    }
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = str(venv / "bin") + os.pathsep + env.get("PATH", "")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_documented_command_installs_the_receiver_and_nothing_else(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, dict(os.environ))
    python = str(venv / "bin" / "python")
    env = clean_environment(venv)
    language, install = extract()["install"]
    assert language == "sh"
    run(["bash", "-euo", "pipefail", "-c", install], ROOT, env)

    listed = json.loads(run([python, "-m", "pip", "list", "--format=json"], tmp_path, env))
    names = {package["name"].lower() for package in listed}
    assert names - {"pip", "setuptools"} == {"bitbybit-webhooks"}, names

    shown = run([python, "-m", "pip", "show", "--files", "bitbybit-webhooks"], tmp_path, env)
    files = [line.strip() for line in shown.split("Files:", 1)[1].splitlines() if line.strip()]
    shipped = {name for name in files if not name.startswith("bitbybit_webhooks-")}
    assert shipped, shown
    assert all(name.startswith("bitbybit/webhooks/") for name in shipped), shipped
    assert "bitbybit/webhooks/py.typed" in shipped
    assert "bitbybit/webhooks/verification.py" in shipped

    where = run(
        [python, "-I", "-c", "import bitbybit.webhooks as w; print(w.__file__)"], tmp_path, env
    )
    assert Path(where.strip()).is_relative_to(venv), where

    check = tmp_path / "check.py"
    check.write_text(extract()["verify"][1], "utf-8")
    alone = run([python, "-I", str(check)], tmp_path, env)
    with_server = run([sys.executable, str(check)], tmp_path, dict(os.environ))
    assert alone == with_server == GOLDEN_OUTPUT
