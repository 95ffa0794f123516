"""Print docs/configuration.md's key table from runce.config.KEYS (the one source of truth)."""

from __future__ import annotations

from runce.config import KEYS, Rate


def _default(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, Rate):
        return f'`"{value}"`'
    if isinstance(value, tuple):
        return "`[" + ", ".join(f'"{item}"' for item in value) + "]`"
    if isinstance(value, float) and value >= 86400 and value % 86400 == 0:
        return f'`"{int(value // 86400)}d"`'
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value!r}`".replace("'", '"')


def table() -> str:
    rows = [
        "| key | type | default | unit | valid range | environment variable | aliases | meaning |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in KEYS:
        env = f"`{key.env}`" if key.env else "—"
        aliases = ", ".join(f"`{a}`" for a in key.aliases) or "—"
        rows.append(
            f"| `{key.name}` | {key.kind} | {_default(key.default)} | {key.unit or '—'} "
            f"| {key.range_text or '—'} | {env} | {aliases} | {key.help} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(table(), end="")
