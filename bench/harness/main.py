"""The command behind ``bench/run``: every measurement, medians, one table, JSON lines.

Each run of each measurement is a fresh process of the implementation's own virtualenv
(runce: the project's ``.venv``; peers: ``bench/.venv-peers``), so no library shares an
interpreter, a cache or a connection with another. The runs are interleaved (run 1 of
every implementation of a group, then run 2, ...) so that a change in the machine's load
falls on all of them alike.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import report, stats
from harness.measure import MARKER
from harness.plan import GROUPS, SINGLE_RUN_GROUPS, SUBJECTS, Subject
from harness.workload import Workload

BENCH_DIR = Path(__file__).resolve().parent.parent
ROOT = BENCH_DIR.parent
PYTHONS = {
    "runce": ROOT / ".venv" / "bin" / "python",
    "peers": BENCH_DIR / ".venv-peers" / "bin" / "python",
}
PRIMARY = {
    "enqueue_single": "runs_per_s",
    "enqueue_batched": "runs_per_s",
    "process": "runs_per_s",
    "ceiling": "runs_per_s",
    "latency": "p99_ms",
    "memory": "growth_mib",
    "once_run": "median_s",
    "once_status": "median_s",
    "startup": "help_s",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    d = Workload()
    ap = argparse.ArgumentParser(
        prog="bench/run",
        description="runce and its peers on the same workloads: one table of medians "
        "and ratios, plus JSON lines.",
    )
    ap.add_argument(
        "--only",
        default=",".join(GROUPS),
        help=f"comma list of groups: {', '.join(GROUPS)} (default: all)",
    )
    ap.add_argument(
        "--subjects", default="", help="comma list of adapters to keep (e.g. runce_sqlite,huey)"
    )
    ap.add_argument(
        "--measurements",
        default="",
        help="comma list of measurements to keep (e.g. process,latency)",
    )
    ap.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    ap.add_argument("--jobs", type=int, default=d.jobs)
    ap.add_argument("--batch", type=int, default=d.batch)
    ap.add_argument("--concurrency", type=int, default=d.concurrency)
    ap.add_argument("--rate", type=float, default=d.rate, help="latency: runs per second")
    ap.add_argument("--duration", type=float, default=d.duration, help="latency: seconds")
    ap.add_argument("--memory-jobs", type=int, default=d.memory_jobs)
    ap.add_argument("--tasks", type=int, default=d.tasks, help="once tasks / revisions")
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON lines file (default bench/results/run-<date>.jsonl)",
    )
    ap.add_argument(
        "--max-load",
        type=float,
        default=4.0,
        help="wait while the 1-minute load average is above this",
    )
    ap.add_argument(
        "--wait",
        type=float,
        default=0.0,
        help="seconds to wait for the load to drop before starting anyway",
    )
    ap.add_argument("--verbose", action="store_true", help="every run, and adapters' output")
    ap.add_argument(
        "--table",
        type=Path,
        metavar="FILE",
        help="only print the table of a JSON-lines file written before",
    )
    return ap.parse_args(argv)


def compile_runce() -> None:
    """Byte-compile runce's sources, as installing a wheel does: an editable install run
    with PYTHONDONTWRITEBYTECODE set would otherwise compile every module in every timed
    process (the peers, installed from wheels, start from bytecode)."""
    compileall.compile_dir(BENCH_DIR.parent / "src" / "runce", quiet=1)


def wait_for_quiet(max_load: float, patience: float) -> None:
    deadline = time.monotonic() + patience
    while os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        print(f"load {os.getloadavg()[0]:.2f} > {max_load:g}: waiting", file=sys.stderr)
        time.sleep(min(30.0, max(1.0, deadline - time.monotonic())))
    if os.getloadavg()[0] > max_load:
        print(
            f"warning: starting at load {os.getloadavg()[0]:.2f}; figures will be noisy",
            file=sys.stderr,
        )


def measure_once(subject: Subject, measurement: str, w: Workload, verbose: bool) -> dict:
    python = PYTHONS[subject.venv]
    if not python.exists():
        return {"result": {"error": f"{python} missing: run bench/setup"}, "meta": {}}
    cmd = [str(python), "-m", "harness.measure", subject.adapter, measurement, w.to_json()]
    # BENCH_RUNCE_SRC: another runce source tree (a checkout's src/) measured instead of the
    # installed one, to compare two versions with the same harness.
    paths = [str(BENCH_DIR), *filter(None, [os.environ.get("BENCH_RUNCE_SRC")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    try:
        done = subprocess.run(
            cmd, cwd=BENCH_DIR, env=env, capture_output=True, text=True, timeout=1800
        )
    except subprocess.TimeoutExpired:
        return {"result": {"error": "timed out after 1800 s"}, "meta": {}}
    if verbose and done.stderr.strip():
        print(done.stderr.rstrip(), file=sys.stderr)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(MARKER):
            parsed: dict[str, Any] = json.loads(line[len(MARKER) :])
            if "error" in parsed["result"] and not verbose:
                print(done.stderr[-2000:], file=sys.stderr)
            return parsed
    return {"result": {"error": f"exit {done.returncode}: {done.stderr[-1500:]}"}, "meta": {}}


def host_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load": [round(x, 2) for x in os.getloadavg()],
    }


def run_group(
    group: str, args: argparse.Namespace, w: Workload, out: Any, results: report.Results
) -> bool:
    keep_subjects = set(filter(None, args.subjects.split(",")))
    keep_measurements = set(filter(None, args.measurements.split(",")))
    pairs = [
        (s, m)
        for s in SUBJECTS
        if s.group == group and (not keep_subjects or s.adapter in keep_subjects)
        for m in s.measurements
        if not keep_measurements or m in keep_measurements
    ]
    runs = 1 if group in SINGLE_RUN_GROUPS else args.runs
    measurements = list(dict.fromkeys(m for _, m in pairs))
    ok = True
    for measurement in measurements:
        subjects = [s for s, m in pairs if m == measurement]
        samples: dict[str, list[dict[str, Any]]] = {s.adapter: [] for s in subjects}
        metas: dict[str, dict[str, Any]] = {}
        began = time.time()
        load_before = host_info()["load"]
        for i in range(runs):
            for s in subjects:
                if samples[s.adapter] and _stop_early(samples[s.adapter][-1]):
                    continue
                print(
                    f"[{group}] {s.label} {measurement} run {i + 1}/{runs}",
                    file=sys.stderr,
                    flush=True,
                )
                got = measure_once(s, measurement, w, args.verbose)
                samples[s.adapter].append(got["result"])
                metas[s.adapter] = got["meta"] or metas.get(s.adapter, {})
                if args.verbose:
                    print(f"    {json.dumps(got['result'])}", file=sys.stderr, flush=True)
        for s in subjects:
            line = _json_line(
                s,
                measurement,
                samples[s.adapter],
                metas.get(s.adapter, {}),
                w,
                load_before,
                time.time() - began,
            )
            ok = ok and "error" not in line
            results[s.adapter, measurement] = line.get("result") or {
                k: v for k, v in line.items() if k in ("error", "supported", "reason")
            }
            out.write(json.dumps(line) + "\n")
            out.flush()
    return ok


def _stop_early(result: dict[str, Any]) -> bool:
    return "error" in result or result.get("supported") is False


def _json_line(
    subject: Subject,
    measurement: str,
    samples: list[dict[str, Any]],
    meta: dict[str, Any],
    w: Workload,
    load_before: list[float],
    took: float,
) -> dict[str, Any]:
    line: dict[str, Any] = {
        "impl": meta.get("name", subject.label),
        "adapter": subject.adapter,
        "backend": meta.get("backend"),
        "version": meta.get("version"),
        "measurement": measurement,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    failed = [s for s in samples if "error" in s]
    if failed:
        line["error"] = failed[0]["error"]
    elif samples and samples[0].get("supported") is False:
        line.update(samples[0])
    else:
        key = PRIMARY[measurement]
        line["runs"] = len(samples)
        line["result"] = stats.median_result(samples)
        line[f"{key}_samples"] = [s.get(key) for s in samples]
    line["params"] = asdict(w)
    line["settings"] = meta.get("settings", {})
    line["host"] = {**host_info(), "load_before": load_before}
    line["took_s"] = round(took, 1)
    return line


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    w = Workload(
        jobs=args.jobs,
        batch=args.batch,
        concurrency=args.concurrency,
        rate=args.rate,
        duration=args.duration,
        memory_jobs=args.memory_jobs,
        tasks=args.tasks,
    )
    if args.table:
        print(report.render(*report.from_json_lines(args.table)))
        return 0
    groups = [g for g in args.only.split(",") if g]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        print(f"unknown group(s) {', '.join(unknown)}; known: {', '.join(GROUPS)}", file=sys.stderr)
        return 2
    stamp = datetime.now(UTC)
    out_path = args.out or BENCH_DIR / "results" / f"run-{stamp:%Y%m%d-%H%M%S}.jsonl"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    compile_runce()
    wait_for_quiet(args.max_load, args.wait)
    load_start = os.getloadavg()[0]
    results: report.Results = {}
    ok = True
    with out_path.open("a") as out:
        for group in groups:
            ok = run_group(group, args, w, out, results) and ok
    title = (
        f"runce bench, {stamp:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
        f"load {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end; "
        f"medians of {args.runs} runs of {w.jobs:,} no-op runs"
    )
    print(report.render(results, w, title))
    print(f"\nJSON lines: {out_path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
