"""Public names carry their real types to a user's ``mypy --strict``.

A user's module (tests/typecheck/user_module.py: typed jobs with pydantic models, ``.later``,
``.now``, ``.batch``, ``runce.enqueue``, ``list_runs``, ``run_tasks``, ``runce.Client``) must
type-check with no ``Any`` in any expression, and no public name may reach a type checker
as a bare ``object`` or ``Any``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import runce

mypy_api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).parents[2]
STRICT = ["--strict", "--disallow-any-expr", "--no-error-summary", "--show-error-codes"]


def _mypy(*args: str) -> tuple[str, int]:
    out, err, status = mypy_api.run([*STRICT, "--config-file", str(ROOT / "pyproject.toml"), *args])
    return out + err, status


def test_a_users_module_type_checks_strictly_with_no_any() -> None:
    output, status = _mypy(str(ROOT / "tests" / "typecheck" / "user_module.py"))
    assert status == 0, output


def test_a_misspelt_enqueue_option_is_a_type_error(tmp_path: Path) -> None:
    module = tmp_path / "misspelt.py"
    module.write_text(
        "import runce\nrunce.enqueue('k', {}, priorty=1)\nrunce.enqueue('k', {}, priority='high')\n"
    )
    output, status = _mypy(str(module))
    assert status == 1
    assert 'Unexpected keyword argument "priorty"' in output, output
    assert 'Argument "priority" to "enqueue" has incompatible type "str"' in output, output


def test_no_public_name_reaches_a_type_checker_as_object_or_any(tmp_path: Path) -> None:
    names = [name for name in runce.__all__ if name != "__version__"]
    module = tmp_path / "reveal_public.py"
    module.write_text(
        "import runce\n" + "".join(f"reveal_type(runce.{name})\n" for name in names),
        encoding="utf-8",
    )
    output, _ = _mypy(str(module))
    revealed = re.findall(r'Revealed type is "(.*)"', output)
    assert len(revealed) == len(names), output
    untyped = [
        name
        for name, shown in zip(names, revealed, strict=True)
        if shown in {"builtins.object", "Any"} or shown.startswith("Any")
    ]
    assert untyped == [], output


def test_the_lazy_table_names_every_lazily_loaded_public_name() -> None:
    from runce import _lazy_table

    eager = {name for name in vars(runce) if not name.startswith("_")}
    assert set(runce.__all__) - {"__version__"} - eager <= set(_lazy_table())
    for name, module in _lazy_table().items():
        if module == "runce":  # a subpackage reached as an attribute: runce.stores
            assert getattr(runce, name).__name__ == f"runce.{name}"
            continue
        assert name in runce.__all__, name
        assert getattr(__import__(module, fromlist=[name]), name) is getattr(runce, name)


def test_the_old_home_of_the_once_task_functions_still_imports_and_says_where_they_went() -> None:
    import importlib
    import sys

    from runce.tasks import library

    sys.modules.pop("runce.tasks.api", None)
    with pytest.warns(DeprecationWarning, match=r"runce\.tasks\.library"):
        old = importlib.import_module("runce.tasks.api")
    assert old.baseline is library.baseline
    assert set(old.__all__) <= set(dir(library))
