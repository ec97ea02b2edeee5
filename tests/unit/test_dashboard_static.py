"""The dashboard's vendored front-end files are the published ones, and are served by the app."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from starlette.testclient import TestClient

from bitbybit.api.app import create_app
from bitbybit.config import Settings
from bitbybit.dashboard.web import HERE

VENDOR = HERE / "static" / "vendor"
TEMPLATES = HERE / "templates"


def _checksums() -> dict[str, tuple[str, str]]:
    found = {}
    for line in (VENDOR / "CHECKSUMS").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name, package = line.split()
            found[name] = (package, digest)
    return found


def test_every_vendored_file_matches_its_published_checksum() -> None:
    checksums = _checksums()
    assert {"htmx.min.js", "uPlot.iife.min.js", "uPlot.min.css"} <= set(checksums)
    for name, (package, digest) in checksums.items():
        assert re.fullmatch(r"[a-z.]+@\d+\.\d+\.\d+", package), package  # pinned, exact
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    on_disk = {path.name for path in VENDOR.iterdir()} - {"CHECKSUMS"}
    assert on_disk == set(checksums)  # nothing vendored without a checksum


def test_templates_name_only_files_the_app_serves(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/x.db"))
    client = TestClient(app)
    named: set[str] = set()
    for template in TEMPLATES.rglob("*.html"):
        named |= set(re.findall(r'(?:src|href)="(/dashboard/static/[^"]+)"', template.read_text()))
    assert "/dashboard/static/vendor/htmx.min.js" in named
    for path in sorted(named):
        answer = client.get(path)
        assert answer.status_code == 200, path
    assert not any("//" in path.removeprefix("/") for path in named)  # never another origin
    for template in TEMPLATES.rglob("*.html"):  # no CDN, no inline script or style
        text = template.read_text()
        assert not re.search(r'(?:src|href)="(?:https?:)?//', text), template
        assert "<script>" not in text, template
        assert " style=" not in text, template
