"""Refresh the dashboard's vendored front-end files from the npm registry.

The dashboard has no build step: the few files it needs are copied, as published, from pinned
npm packages into ``src/bitbybit/dashboard/static/vendor/`` and served by the app itself (never
from a CDN). ``static/vendor/CHECKSUMS`` records each file's package, version and SHA-256;
``tests/unit/test_dashboard_static.py`` checks the files against it.

    python scripts/vendor_static.py          # fetch with `npm pack`, copy, rewrite CHECKSUMS
    python scripts/vendor_static.py --check  # only compare the files with CHECKSUMS
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR = Path(__file__).resolve().parent.parent / "src/bitbybit/dashboard/static/vendor"
PACKAGES = {
    # npm package@version: {file in the package tarball: name served under /dashboard/static/vendor}
    "htmx.org@2.0.11": {"package/dist/htmx.min.js": "htmx.min.js"},
    "uplot@1.6.32": {
        "package/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
        "package/dist/uPlot.min.css": "uPlot.min.css",
    },
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def expected() -> dict[str, tuple[str, str]]:
    """name → (package@version, sha256) from CHECKSUMS."""
    found = {}
    for line in (VENDOR / "CHECKSUMS").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name, package = line.split()
            found[name] = (package, digest)
    return found


def check() -> list[str]:
    problems = []
    for name, (_, digest) in expected().items():
        path = VENDOR / name
        if not path.exists():
            problems.append(f"{name}: missing")
        elif sha256(path) != digest:
            problems.append(f"{name}: SHA-256 differs from CHECKSUMS")
    return problems


def fetch() -> None:
    lines = ["# sha256  file  npm package@version (scripts/vendor_static.py writes this)"]
    with tempfile.TemporaryDirectory() as tmp:
        for package, files in PACKAGES.items():
            out = subprocess.run(  # noqa: S603  # npm, with our own pinned package names
                ["npm", "pack", package, "--silent"],  # noqa: S607  # the machine's npm
                cwd=tmp,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()[-1]
            with tarfile.open(Path(tmp) / out) as tar:
                for member, name in files.items():
                    extracted = tar.extractfile(member)
                    assert extracted is not None, member
                    (VENDOR / name).write_bytes(extracted.read())
                    lines.append(f"{sha256(VENDOR / name)}  {name}  {package}")
    (VENDOR / "CHECKSUMS").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only")
    if not parser.parse_args().check:
        fetch()
    problems = check()
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
