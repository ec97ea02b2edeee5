"""Write the OpenAPI document the server serves to ``docs/openapi.json``, or check it is current.

    .venv/bin/python scripts/openapi.py            # regenerate docs/openapi.json
    .venv/bin/python scripts/openapi.py --check    # exit 1 if docs/openapi.json is stale

The document is built from the application itself (no database is opened), with sorted keys,
two-space indentation and a trailing newline, so that a change to the API shows as a small diff
and integrators can generate clients from the committed file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "openapi.json"
COMMAND = ".venv/bin/python scripts/openapi.py"


def render() -> str:
    """The application's OpenAPI document, as it is committed."""
    from bitbybit.api.app import create_app
    from bitbybit.config import Settings

    schema = create_app(Settings.from_env({})).openapi()
    return json.dumps(schema, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check the file is current")
    parser.add_argument("--output", type=Path, default=DOCUMENT, help="default: %(default)s")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
