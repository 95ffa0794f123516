"""Write docs/openapi.json from the app (`--check`: only say whether it is up to date)."""

from __future__ import annotations

import sys
from pathlib import Path

from runce.api.app import create_app
from runce.api.openapi import text

DOCUMENT = Path(__file__).parents[1] / "docs" / "openapi.json"


def current() -> str:
    """The app's OpenAPI document; the store is not opened to make it."""
    return text(create_app({"store": "memory://openapi"}))


def main(argv: list[str]) -> int:
    wanted = current()
    if "--check" in argv:
        if DOCUMENT.read_text(encoding="utf-8") != wanted:
            print(f"{DOCUMENT} is out of date: run python scripts/openapi.py", file=sys.stderr)
            return 1
        return 0
    DOCUMENT.write_text(wanted, encoding="utf-8")
    print(f"wrote {DOCUMENT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
