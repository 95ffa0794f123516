"""One measurement of one implementation, in a fresh process of that implementation's venv.

    python -m harness.measure ADAPTER MEASUREMENT '{"jobs": 10000, ...}'

Prints one line ``RESULT {"result": {...}, "meta": {...}}``; anything else on stdout or
stderr is the adapter's own chatter. On failure the result is ``{"error": "..."}`` and the
exit status 1.
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback
from importlib import metadata
from types import ModuleType
from typing import Any

from harness.workload import Workload

MARKER = "RESULT "


def describe(adapter: ModuleType) -> dict[str, Any]:
    package = getattr(adapter, "PACKAGE", None)
    try:
        version = metadata.version(package) if package else None
    except metadata.PackageNotFoundError:
        version = None
    return {
        "name": getattr(adapter, "NAME", adapter.__name__),
        "backend": getattr(adapter, "BACKEND", None),
        "package": package,
        "version": version,
        "settings": getattr(adapter, "SETTINGS", {}),
    }


def main(argv: list[str]) -> int:
    adapter_name, measurement, workload_json = argv
    workload = Workload.from_json(workload_json)
    status = 0
    meta: dict[str, Any] = {}
    try:
        adapter = importlib.import_module(f"harness.adapters.{adapter_name}")
        meta = describe(adapter)
        run = getattr(adapter, measurement, None)
        if run is None:
            result = {"supported": False, "reason": f"{adapter_name} has no {measurement}"}
        else:
            result = run(workload)
    except Exception as exc:
        traceback.print_exc()
        result, status = {"error": f"{type(exc).__name__}: {exc}"}, 1
    print(MARKER + json.dumps({"result": result, "meta": meta}), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
