"""The code in docs/frameworks.md and remote.md's async client is code the suite runs: each
block names the file it comes from on its first line and is a verbatim part of it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
FENCE = re.compile(r"```(python|toml)\n(.*?)```", re.DOTALL)


def _blocks(doc: str) -> list[tuple[str, str]]:
    return [(match[1], match[2]) for match in FENCE.finditer((ROOT / doc).read_text())]


@pytest.mark.parametrize("doc", ["docs/frameworks.md", "docs/remote.md"])
def test_every_framework_example_is_part_of_a_tested_file(doc: str) -> None:
    checked = 0
    for _language, block in _blocks(doc):
        first, _, body = block.partition("\n")
        source = first.removeprefix("# ").strip()
        if doc == "docs/remote.md" and not source.startswith("examples/"):
            continue  # remote.md's other blocks predate this check
        path = ROOT / source
        assert path.is_file(), f"{doc}: a block names {source!r}, which is not a file"
        assert body.strip() in path.read_text(), f"{doc}: a block is not part of {source}"
        checked += 1
    assert checked >= (9 if doc == "docs/frameworks.md" else 1)
