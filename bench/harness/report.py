"""The one table: runce's median, each peer's median, and runce / peer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.plan import PEER_COMMANDS, ROWS, SUBJECTS, Row
from harness.workload import Workload

Results = dict[tuple[str, str], dict[str, Any]]  # (adapter, measurement) -> median result

HEADERS = ("backend", "workload", "unit", "runce", "peer", "peer's", "runce/peer")


def label_of(adapter: str, measurement: str) -> str:
    if (adapter, measurement) in PEER_COMMANDS:
        return PEER_COMMANDS[adapter, measurement]
    return next(s.label for s in SUBJECTS if s.adapter == adapter)


def fmt(value: Any) -> str:
    if not isinstance(value, int | float):
        return "—" if value is None else str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _figure(results: Results, adapter: str, measurement: str, key: str) -> Any:
    found = results.get((adapter, measurement))
    if found is None:
        return None
    if "error" in found:
        return "error"
    if found.get("supported") is False:
        return "n/a"
    return found.get(key)


def _ratio(mine: Any, theirs: Any) -> str:
    if isinstance(mine, int | float) and isinstance(theirs, int | float) and theirs:
        return f"{mine / theirs:.2f}x"
    return "—"


def _share(mine: Any, ceiling: Any) -> str:
    if not (isinstance(mine, int | float) and isinstance(ceiling, int | float) and ceiling):
        return "—"
    percent = 100 * mine / ceiling
    return f"{percent:.0f}%" if percent >= 10 else f"{percent:.1f}%"


def _workload_text(row: Row, w: Workload) -> str:
    return (
        row.workload.replace("batches of B", f"batches of {w.batch:,}")
        .replace("concurrency C", f"concurrency {w.concurrency}")
        .replace("R/s", f"{w.rate:g}/s")
        .replace("M runs", f"{w.memory_jobs:,} runs")
        .replace("T applied", f"{w.tasks:,} applied")
    )


def rows(results: Results, w: Workload) -> list[tuple[str, ...]]:
    lines: list[tuple[str, ...]] = []
    for row in ROWS:
        mine = _figure(results, row.runce, row.measurement, row.key)
        if mine is None:
            continue
        arrow = "↑" if row.higher_is_better else "↓"
        head = (row.section, _workload_text(row, w), f"{row.unit} {arrow}", fmt(mine))
        others = [(a, m, _figure(results, a, m, row.key)) for a, m in row.peers]
        others = [o for o in others if o[2] is not None]
        if not others and row.ceiling is None:
            lines.append((*head, "", "", ""))
        for i, (adapter, measurement, theirs) in enumerate(others):
            first = head if i == 0 else ("", "", "", "")
            lines.append(
                (*first, label_of(adapter, measurement), fmt(theirs), _ratio(mine, theirs))
            )
        if row.ceiling is not None:
            ceiling = _figure(results, row.ceiling[0], row.ceiling[1], row.key)
            if ceiling is not None:
                first = head if not others else ("", "", "", "")
                lines.append((*first, "SQL ceiling", fmt(ceiling), _share(mine, ceiling)))
        if row.client_ceiling is not None:
            client = _figure(results, *row.client_ceiling)
            if client is not None:
                lines.append(("", "", "", "", "psycopg ceiling", fmt(client), _share(mine, client)))
    return lines


def from_json_lines(path: Path) -> tuple[Results, Workload, str]:
    """The results, workload and a title from a file ``bench/run`` wrote."""
    results: Results = {}
    workload, first = Workload(), None
    for text in path.read_text().splitlines():
        line = json.loads(text)
        first = first or line
        workload = Workload(**line["params"])
        kept = {k: v for k, v in line.items() if k in ("error", "supported", "reason")}
        results[line["adapter"], line["measurement"]] = line.get("result") or kept
    title = f"runce bench from {path.name}"
    if first:
        title += f", {first['date']}, load {first['host']['load_before'][0]:.2f} at start"
    return results, workload, title


def render(results: Results, w: Workload, title: str) -> str:
    body = rows(results, w)
    if not body:
        return title + "\n(no results)"
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(HEADERS)]
    numeric = {3, 5, 6}

    def line(cells: tuple[str, ...]) -> str:
        parts = [
            c.rjust(widths[i]) if i in numeric else c.ljust(widths[i]) for i, c in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    out = [title, line(HEADERS), line(tuple("-" * n for n in widths))]
    section = None
    for cells in body:
        if cells[0] and cells[0] != section and section is not None:
            out.append("")
        section = cells[0] or section
        out.append(line(cells))
    out.append("")
    out.append("↑ higher is better, ↓ lower is better; runce/peer > 1 means runce is higher.")
    out.append(
        "SQL ceiling: runce's share of what its own statements reach with no client work "
        "(pgbench; a batch's COPY data built beforehand). psycopg ceiling: the same one-run "
        "statement sent through psycopg from a loop that does nothing else."
    )
    return "\n".join(out)
