"""Finding, reading and validating configuration (CF-1, CF-2, CF-3)."""

from __future__ import annotations

import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runce.config import (
    DEFAULT_STORE_URL,
    define_config,
    find_config_file,
    load_config,
    load_services,
    parse_duration,
)
from runce.errors import ConfigError


@pytest.fixture(autouse=True)
def _keep_sys_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_config puts the config's directory first on sys.path; undo it after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def module_name() -> Iterator[str]:
    """A module name no other test uses, forgotten after the test."""
    name = f"runce_test_mod_{uuid.uuid4().hex}"
    yield name
    sys.modules.pop(name, None)


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def toml(tmp_path: Path, text: str) -> Path:
    return write(tmp_path / "runce.toml", text)


def message(excinfo: pytest.ExceptionInfo[ConfigError]) -> str:
    return str(excinfo.value)


# ---------------------------------------------------------------------------------------
# Finding the file (CF-1)
# ---------------------------------------------------------------------------------------


def test_runce_toml_is_found_in_the_start_directory(tmp_path: Path) -> None:
    found = toml(tmp_path, 'tasks_dir = "jobs"\n')
    config = load_config(start=tmp_path, env={})
    assert find_config_file(tmp_path) == found
    assert config.path == found
    assert config.base_dir == tmp_path.resolve()
    assert config.tasks_dir == tmp_path.resolve() / "jobs"


def test_pyproject_with_tool_runce_is_found(tmp_path: Path) -> None:
    found = write(
        tmp_path / "pyproject.toml",
        """
        [project]
        name = "app"

        [tool.runce]
        tasks_dir = "once"
        """,
    )
    config = load_config(start=tmp_path, env={})
    assert config.path == found
    assert config.tasks_dir == tmp_path.resolve() / "once"


def test_runce_config_py_is_found(tmp_path: Path) -> None:
    found = write(
        tmp_path / "runce_config.py",
        """
        import runce

        config = runce.define_config(tasks_dir="py_tasks", lock={"ttl": "2m"})
        """,
    )
    config = load_config(start=tmp_path, env={})
    assert config.path == found
    assert config.tasks_dir == tmp_path.resolve() / "py_tasks"
    assert config.lock.ttl == 120.0


def test_runce_config_py_can_import_a_module_beside_it(tmp_path: Path, module_name: str) -> None:
    write(tmp_path / f"{module_name}.py", 'TASKS = "from_sibling"\n')
    write(
        tmp_path / "runce_config.py",
        f"""
        import runce
        from {module_name} import TASKS

        config = runce.define_config(tasks_dir=TASKS)
        """,
    )
    assert load_config(start=tmp_path, env={}).tasks_dir == tmp_path.resolve() / "from_sibling"


def test_the_search_walks_up_to_parents(tmp_path: Path) -> None:
    found = toml(tmp_path, 'tasks_dir = "jobs"\n')
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    config = load_config(start=deep, env={})
    assert config.path == found
    assert config.base_dir == tmp_path.resolve()
    assert config.tasks_dir == tmp_path.resolve() / "jobs"


def test_the_nearest_directory_wins(tmp_path: Path) -> None:
    toml(tmp_path, 'tasks_dir = "outer"\n')
    inner = write(tmp_path / "app" / "pyproject.toml", '[tool.runce]\ntasks_dir = "inner"\n')
    start = tmp_path / "app" / "src"
    start.mkdir()
    config = load_config(start=start, env={})
    assert config.path == inner
    assert config.tasks_dir == tmp_path.resolve() / "app" / "inner"


def test_a_pyproject_without_tool_runce_is_not_a_candidate(tmp_path: Path) -> None:
    outer = toml(tmp_path, 'tasks_dir = "outer"\n')
    write(tmp_path / "app" / "pyproject.toml", '[project]\nname = "app"\n\n[tool.ruff]\n')
    assert find_config_file(tmp_path / "app") == outer
    assert load_config(start=tmp_path / "app", env={}).path == outer


def test_a_pyproject_without_tool_runce_beside_runce_toml_is_not_a_conflict(
    tmp_path: Path,
) -> None:
    found = toml(tmp_path, "")
    write(tmp_path / "pyproject.toml", '[project]\nname = "app"\n')
    assert find_config_file(tmp_path) == found


@pytest.mark.parametrize(
    ("first", "second", "second_text"),
    [
        ("runce.toml", "pyproject.toml", "[tool.runce]\n"),
        ("runce.toml", "runce_config.py", "import runce\nconfig = runce.define_config()\n"),
        ("pyproject.toml", "runce_config.py", "import runce\nconfig = runce.define_config()\n"),
    ],
)
def test_two_candidates_in_one_directory_are_an_error_naming_both(
    tmp_path: Path, first: str, second: str, second_text: str
) -> None:
    write(tmp_path / first, "[tool.runce]\n" if first == "pyproject.toml" else "")
    write(tmp_path / second, second_text)
    with pytest.raises(ConfigError) as excinfo:
        load_config(start=tmp_path, env={})
    assert f"{first} and {second}" in message(excinfo)
    assert str(tmp_path.resolve()) in message(excinfo)


def test_two_candidates_in_a_parent_are_an_error_too(tmp_path: Path) -> None:
    toml(tmp_path, "")
    write(tmp_path / "runce_config.py", "import runce\nconfig = runce.define_config()\n")
    (tmp_path / "sub").mkdir()
    with pytest.raises(ConfigError, match=r"runce\.toml and runce_config\.py"):
        find_config_file(tmp_path / "sub")


def test_an_explicit_path_is_read_without_searching(tmp_path: Path) -> None:
    # Two candidates in the start directory would be an error if runce searched.
    toml(tmp_path, 'tasks_dir = "searched"\n')
    write(tmp_path / "runce_config.py", "import runce\nconfig = runce.define_config()\n")
    chosen = write(tmp_path / "conf" / "staging.toml", 'tasks_dir = "staged"\n')
    config = load_config(chosen, start=tmp_path, env={})
    assert config.path == chosen.resolve()
    assert config.base_dir == chosen.parent.resolve()
    assert config.tasks_dir == chosen.parent.resolve() / "staged"


def test_an_explicit_relative_path_is_relative_to_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = write(tmp_path / "conf" / "runce.toml", 'tasks_dir = "t"\n')
    monkeypatch.chdir(tmp_path)
    assert load_config("conf/runce.toml", env={}).path == chosen.resolve()


def test_a_missing_explicit_path_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist") as excinfo:
        load_config(missing, env={})
    assert str(missing) in message(excinfo)


def test_an_explicit_pyproject_without_tool_runce_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "pyproject.toml", '[project]\nname = "app"\n')
    with pytest.raises(ConfigError, match=r"\[tool\.runce\]"):
        load_config(path, env={})


def test_invalid_toml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    path = toml(tmp_path, "tasks_dir = \n")
    with pytest.raises(ConfigError, match="not valid TOML") as excinfo:
        load_config(path, env={})
    assert str(path) in message(excinfo)


def test_a_runce_config_py_that_raises_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path / "runce_config.py", "raise RuntimeError('no config today')\n")
    with pytest.raises(ConfigError, match="RuntimeError") as excinfo:
        load_config(start=tmp_path, env={})
    assert str(path) in message(excinfo)


def test_a_runce_config_py_without_config_is_an_error(tmp_path: Path) -> None:
    write(tmp_path / "runce_config.py", "settings = {}\n")
    with pytest.raises(ConfigError, match=r"must export `config = runce\.define_config"):
        load_config(start=tmp_path, env={})


# ---------------------------------------------------------------------------------------
# Defaults and paths
# ---------------------------------------------------------------------------------------


def test_defaults_when_nothing_is_found(tmp_path: Path) -> None:
    start = tmp_path / "empty"
    start.mkdir()
    config = load_config(start=start, env={})
    assert config.path is None
    assert "defaults" in config.source
    assert config.base_dir == start.resolve()
    assert config.tasks_dir == start.resolve() / "tasks"
    assert config.store.type == "sqlite"
    assert config.store.url == DEFAULT_STORE_URL
    assert config.store.base_dir == start.resolve()
    assert config.store.auto_migrate is True
    assert (config.lock.enabled, config.lock.ttl, config.lock.owner) == (True, 60.0, None)
    assert (config.on_drift, config.on_out_of_order) == ("fail", "run")
    assert config.services is None
    assert config.dry_run is False


def test_relative_tasks_dir_is_relative_to_the_config_file_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "project" / "runce.toml", 'tasks_dir = "once/tasks"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(path, env={})
    assert config.tasks_dir == (tmp_path / "project" / "once" / "tasks").resolve()
    assert config.store.base_dir == (tmp_path / "project").resolve()


def test_an_absolute_tasks_dir_is_kept(tmp_path: Path) -> None:
    absolute = (tmp_path / "abs" / "tasks").resolve()
    path = write(tmp_path / "p" / "runce.toml", f"tasks_dir = {str(absolute)!r}\n")
    assert load_config(path, env={}).tasks_dir == absolute


def test_the_config_directory_is_put_first_on_sys_path(tmp_path: Path) -> None:
    path = write(tmp_path / "proj" / "runce.toml", "")
    sys.path.append(str(path.parent.resolve()))  # already present, but not first
    load_config(path, env={})
    assert sys.path[0] == str(path.parent.resolve())
    assert sys.path.count(str(path.parent.resolve())) == 1


def test_with_no_file_the_start_directory_is_put_first_on_sys_path(tmp_path: Path) -> None:
    load_config(start=tmp_path, env={})
    assert sys.path[0] == str(tmp_path.resolve())


# ---------------------------------------------------------------------------------------
# Interpolation
# ---------------------------------------------------------------------------------------


def test_env_var_interpolation(tmp_path: Path) -> None:
    path = toml(tmp_path, 'store = "${DB_URL}"\n[lock]\nowner = "pod-${POD}-x"\n')
    config = load_config(path, env={"DB_URL": "postgresql://u@db/app", "POD": "7"})
    assert config.store.type == "postgresql"
    assert config.store.url == "postgresql://u@db/app"
    assert config.lock.owner == "pod-7-x"


def test_env_var_default_is_used_when_unset(tmp_path: Path) -> None:
    path = toml(tmp_path, 'store = "${DB_URL:-memory://fallback}"\n')
    assert load_config(path, env={}).store.url == "memory://fallback"
    assert load_config(path, env={"DB_URL": "memory://set"}).store.url == "memory://set"


def test_env_var_default_is_used_when_set_but_empty(tmp_path: Path) -> None:
    path = toml(tmp_path, '[lock]\nowner = "${OWNER:-fallback}"\n')
    assert load_config(path, env={"OWNER": ""}).lock.owner == "fallback"


def test_double_dollar_is_a_literal_dollar(tmp_path: Path) -> None:
    path = toml(tmp_path, '[lock]\nowner = "cost$$5 $${HOME}"\n')
    assert load_config(path, env={"HOME": "/root"}).lock.owner == "cost$5 ${HOME}"


def test_interpolation_reaches_into_the_tracker_table(tmp_path: Path) -> None:
    path = toml(tmp_path, 'tracker = { type = "mongo", options = { uri = "${MONGO_URL}" } }\n')
    spec = load_config(path, env={"MONGO_URL": "mongodb://m/db"}).store
    assert spec.url == "mongodb://m/db"
    assert spec.options["uri"] == "mongodb://m/db"


def test_an_unset_env_var_is_an_error_naming_the_key_and_file(tmp_path: Path) -> None:
    path = toml(tmp_path, '[lock]\nowner = "${NOT_SET_ANYWHERE}"\n')
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, env={})
    assert "lock.owner" in message(excinfo)
    assert "runce.toml" in message(excinfo)
    assert "NOT_SET_ANYWHERE" in message(excinfo)


# ---------------------------------------------------------------------------------------
# Validation (CF-2)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('tasks_dirr = "x"\n', "tasks_dirr"),
        ("[lock]\ntttl = 5\n", "lock.tttl"),
        ('lock = { enabled = true, ownr = "me" }\n', "lock.ownr"),
        ("tasks_dir = 'x'\ndry_runn = true\n", "dry_runn"),
    ],
)
def test_an_unknown_key_is_an_error_naming_the_key_and_file(
    tmp_path: Path, text: str, key: str
) -> None:
    path = toml(tmp_path, text)
    with pytest.raises(ConfigError, match="unknown key") as excinfo:
        load_config(path, env={})
    assert repr(key) in message(excinfo)
    assert "runce.toml" in message(excinfo)


def test_an_unknown_key_in_pyproject_names_pyproject(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.runce]\nbogus = 1\n")
    with pytest.raises(ConfigError, match=r"pyproject\.toml: unknown key 'bogus'"):
        load_config(start=tmp_path, env={})


def test_an_unknown_key_in_runce_config_py_names_it(tmp_path: Path) -> None:
    write(tmp_path / "runce_config.py", "import runce\nconfig = runce.define_config(bogus=1)\n")
    with pytest.raises(ConfigError, match=r"runce_config\.py: unknown key 'bogus'"):
        load_config(start=tmp_path, env={})


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[lock]\nttl = "soon"\n', "lock.ttl"),
        ("[lock]\nttl = true\n", "lock.ttl"),
        ("[lock]\nttl = -1\n", "lock.ttl"),
        ('[lock]\nenabled = "perhaps"\n', "lock.enabled"),
        ("[lock]\nowner = 5\n", "lock.owner"),
        ("store = 5\n", "store"),
        ('on_drift = "maybe"\n', "on_drift"),
        ('on_out_of_order = "later"\n', "on_out_of_order"),
        ('auto_migrate = "perhaps"\n', "auto_migrate"),
        ('dry_run = "sometimes"\n', "dry_run"),
        ('tasks_dir = ""\n', "tasks_dir"),
        ('services = "not an import path"\n', "services"),
        ("lock = 5\n", "lock"),
        ("tracker = 5\n", "tracker"),
    ],
)
def test_a_wrong_type_is_an_error_naming_the_key_and_file(
    tmp_path: Path, text: str, key: str
) -> None:
    path = toml(tmp_path, text)
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, env={})
    assert f"{key} must be" in message(excinfo)
    assert message(excinfo).startswith("runce.toml: ")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_a_non_finite_duration_is_refused(tmp_path: Path, value: str) -> None:
    path = toml(tmp_path, f"[lock]\nttl = {value}\n")
    with pytest.raises(ConfigError, match=r"lock\.ttl"):
        load_config(path, env={})


def test_valid_values_are_parsed(tmp_path: Path) -> None:
    path = toml(
        tmp_path,
        """
        auto_migrate = false
        on_drift = "warn"
        on_out_of_order = "fail"
        dry_run = true

        [lock]
        enabled = false
        ttl = "90s"
        owner = "deploy-bot"
        """,
    )
    config = load_config(path, env={})
    assert config.store.auto_migrate is False
    assert (config.on_drift, config.on_out_of_order, config.dry_run) == ("warn", "fail", True)
    assert (config.lock.enabled, config.lock.ttl, config.lock.owner) == (False, 90.0, "deploy-bot")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (90, 90.0),
        (1.5, 1.5),
        (0, 0.0),
        ("90", 90.0),
        ("90s", 90.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("30d", 30 * 86400.0),
        ("500ms", 0.5),
        ("1.5m", 90.0),
        (" 10 s ", 10.0),
    ],
)
def test_parse_duration_accepts(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [-1, -0.5, "-5s", "-5", "soon", "", "5 minutes", "5M", "5w", "s", "1e3", True, False, None, []],
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(value)


# ---------------------------------------------------------------------------------------
# The seed's camelCase keys and tracker table
# ---------------------------------------------------------------------------------------


def test_camel_case_aliases(tmp_path: Path) -> None:
    path = toml(
        tmp_path,
        'tasksDir = "seed_tasks"\ndryRun = true\nonDrift = "warn"\n[lock]\nttlMs = 1500\n',
    )
    config = load_config(path, env={})
    assert config.tasks_dir == tmp_path.resolve() / "seed_tasks"
    assert config.dry_run is True
    assert config.on_drift == "warn"
    assert config.lock.ttl == pytest.approx(1.5)


def test_camel_case_aliases_in_runce_config_py(tmp_path: Path) -> None:
    write(
        tmp_path / "runce_config.py",
        "import runce\nconfig = runce.define_config(tasksDir='t2', lock={'ttlMs': 60_000})\n",
    )
    config = load_config(start=tmp_path, env={})
    assert config.tasks_dir == tmp_path.resolve() / "t2"
    assert config.lock.ttl == 60.0


@pytest.mark.parametrize("value", ["-1", '"soon"', "true"])
def test_a_bad_ttl_ms_names_the_key(tmp_path: Path, value: str) -> None:
    path = toml(tmp_path, f"[lock]\nttlMs = {value}\n")
    with pytest.raises(
        ConfigError, match=r"lock\.ttlMs must be a (finite )?number of milliseconds"
    ):
        load_config(path, env={})


def test_env_lock_ttl_overrides_ttl_ms_from_the_file(tmp_path: Path) -> None:
    path = toml(tmp_path, "[lock]\nttlMs = 5000\n")
    assert load_config(path, env={"RUNCE_LOCK_TTL": "30"}).lock.ttl == 30.0


def test_an_override_of_lock_ttl_beats_ttl_ms_from_the_file(tmp_path: Path) -> None:
    path = toml(tmp_path, "[lock]\nttlMs = 5000\n")
    assert load_config(path, env={}, overrides={"lock.ttl": 10}).lock.ttl == 10.0


def test_the_seed_tracker_table_gives_a_store_spec(tmp_path: Path) -> None:
    path = toml(
        tmp_path,
        'tracker = { type = "mongo", options = { uri = "mongodb://h/db", db = "infra", '
        'appliedCollection = "runce.applied", lockCollection = "runce.lock" } }\n',
    )
    spec = load_config(path, env={}).store
    assert spec.type == "mongo"
    assert spec.url == "mongodb://h/db"
    assert dict(spec.options) == {
        "uri": "mongodb://h/db",
        "db": "infra",
        "appliedCollection": "runce.applied",
        "lockCollection": "runce.lock",
    }
    assert spec.base_dir == tmp_path.resolve()


def test_store_and_tracker_together_are_an_error(tmp_path: Path) -> None:
    path = toml(
        tmp_path,
        'store = "sqlite:///x.db"\n'
        'tracker = { type = "mongo", options = { uri = "mongodb://h" } }\n',
    )
    with pytest.raises(ConfigError, match="either store or tracker") as excinfo:
        load_config(path, env={})
    assert "runce.toml" in message(excinfo)


@pytest.mark.parametrize(
    ("tracker", "expected"),
    [
        ('{ type = "mongo", colour = "red" }', "tracker.colour"),
        ('{ options = { uri = "mongodb://h" } }', "tracker.type"),
        ('{ type = "mongo", options = 5 }', "tracker.options"),
        ('{ type = "redis" }', "tracker.type"),
    ],
)
def test_a_bad_tracker_table_names_the_key(tmp_path: Path, tracker: str, expected: str) -> None:
    path = toml(tmp_path, f"tracker = {tracker}\n")
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.")):
        load_config(path, env={})


@pytest.mark.parametrize(
    ("url", "type_name"),
    [
        ("sqlite:///data/runce.db", "sqlite"),
        ("postgresql://u@h/db", "postgresql"),
        ("mongodb://h/db", "mongodb"),
        ("file:///var/runce/applied.jsonl", "file"),
        ("memory://", "memory"),
    ],
)
def test_store_url_schemes_pick_the_store_type(tmp_path: Path, url: str, type_name: str) -> None:
    spec = load_config(toml(tmp_path, f"store = {url!r}\n"), env={}).store
    assert (spec.type, spec.url) == (type_name, url)


@pytest.mark.parametrize("url", ["redis://x", "no-scheme-at-all"])
def test_an_unknown_store_scheme_is_an_error_naming_the_key(tmp_path: Path, url: str) -> None:
    path = toml(tmp_path, f"store = {url!r}\n")
    with pytest.raises(ConfigError, match=r"^runce\.toml: store: "):
        load_config(path, env={})


# ---------------------------------------------------------------------------------------
# Environment variables and overrides
# ---------------------------------------------------------------------------------------


def test_environment_variables_override_the_file(tmp_path: Path) -> None:
    path = toml(tmp_path, 'store = "sqlite:///file.db"\ntasks_dir = "from_file"\n[lock]\nttl = 5\n')
    env = {
        "RUNCE_STORE_URL": "memory://from-env",
        "RUNCE_TASKS_DIR": "from_env",
        "RUNCE_LOCK_TTL": "5m",
        "RUNCE_ON_DRIFT": "warn",
        "RUNCE_LOCK_ENABLED": "off",
        "RUNCE_LOCK_OWNER": "ci-runner",
        "RUNCE_AUTO_MIGRATE": "0",
        "RUNCE_DRY_RUN": "yes",
    }
    config = load_config(path, env=env)
    assert (config.store.type, config.store.url) == ("memory", "memory://from-env")
    assert config.tasks_dir == tmp_path.resolve() / "from_env"
    assert config.lock.ttl == 300.0
    assert config.on_drift == "warn"
    assert (config.lock.enabled, config.lock.owner) == (False, "ci-runner")
    assert config.store.auto_migrate is False
    assert config.dry_run is True


def test_an_empty_environment_variable_is_ignored(tmp_path: Path) -> None:
    path = toml(tmp_path, "[lock]\nttl = 5\n")
    assert load_config(path, env={"RUNCE_LOCK_TTL": ""}).lock.ttl == 5.0


def test_a_store_url_from_the_environment_replaces_a_tracker_table(tmp_path: Path) -> None:
    path = toml(tmp_path, 'tracker = { type = "mongo", options = { uri = "mongodb://h/db" } }\n')
    spec = load_config(path, env={"RUNCE_STORE_URL": "memory://env"}).store
    assert (spec.type, spec.url) == ("memory", "memory://env")


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("RUNCE_LOCK_TTL", "soon", "lock.ttl"),
        ("RUNCE_LOCK_ENABLED", "sometimes", "lock.enabled"),
        ("RUNCE_AUTO_MIGRATE", "perhaps", "auto_migrate"),
        ("RUNCE_ON_DRIFT", "maybe", "on_drift"),
    ],
)
def test_a_bad_environment_value_names_the_variable(
    tmp_path: Path, variable: str, value: str, key: str
) -> None:
    path = toml(tmp_path, "")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, env={variable: value})
    assert message(excinfo).startswith(f"environment variable {variable}: {key} must be")
    assert repr(value) in message(excinfo)


def test_a_bad_store_url_from_the_environment_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="redis"):
        load_config(toml(tmp_path, ""), env={"RUNCE_STORE_URL": "redis://x"})


def test_overrides_win_over_the_environment_and_the_file(tmp_path: Path) -> None:
    path = toml(tmp_path, 'store = "sqlite:///file.db"\n[lock]\nttl = 5\n')
    env = {"RUNCE_STORE_URL": "memory://env", "RUNCE_LOCK_TTL": "7"}
    config = load_config(
        path, env=env, overrides={"store": "memory://cli", "lock.ttl": "10s", "tasks_dir": "cli"}
    )
    assert config.store.url == "memory://cli"
    assert config.lock.ttl == 10.0
    assert config.tasks_dir == tmp_path.resolve() / "cli"


def test_an_override_of_none_is_ignored(tmp_path: Path) -> None:
    path = toml(tmp_path, "[lock]\nttl = 5\n")
    assert load_config(path, env={}, overrides={"lock.ttl": None}).lock.ttl == 5.0


def test_a_bad_override_names_the_command_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^the command line: lock\.ttl must be"):
        load_config(toml(tmp_path, ""), env={}, overrides={"lock.ttl": -3})


def test_the_process_environment_is_read_when_env_is_not_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith("RUNCE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("RUNCE_LOCK_TTL", "42")
    assert load_config(toml(tmp_path, "[lock]\nttl = 5\n")).lock.ttl == 42.0


def test_env_empty_mapping_ignores_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNCE_LOCK_TTL", "42")
    monkeypatch.setenv("RUNCE_STORE_URL", "memory://process")
    config = load_config(toml(tmp_path, "[lock]\nttl = 5\n"), env={})
    assert config.lock.ttl == 5.0
    assert config.store.url == DEFAULT_STORE_URL


def test_values_stand_in_for_a_file(tmp_path: Path) -> None:
    config = load_config(values={"tasks_dir": "v", "lock": {"ttl": "3s"}}, start=tmp_path, env={})
    assert config.path is None
    assert config.tasks_dir == tmp_path.resolve() / "v"
    assert config.lock.ttl == 3.0
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        load_config(values={"nope": 1}, start=tmp_path, env={})


# ---------------------------------------------------------------------------------------
# services (CF-3)
# ---------------------------------------------------------------------------------------


def test_load_services_calls_the_factory_beside_the_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module_name: str
) -> None:
    project = tmp_path / "project"
    write(
        project / f"{module_name}.py",
        """
        CALLS = []

        def make_services():
            CALLS.append(1)
            return {"db": "connected", "calls": len(CALLS)}
        """,
    )
    path = write(project / "runce.toml", f'services = "{module_name}:make_services"\n')
    monkeypatch.chdir(tmp_path)  # the module is found from the config's folder, not the cwd
    config = load_config(path, env={})
    assert config.services == f"{module_name}:make_services"
    assert load_services(config) == {"db": "connected", "calls": 1}


def test_load_services_follows_a_dotted_attribute(tmp_path: Path, module_name: str) -> None:
    write(
        tmp_path / f"{module_name}.py",
        """
        class Factory:
            @staticmethod
            def build():
                return "built"
        """,
    )
    path = toml(tmp_path, f'services = "{module_name}:Factory.build"\n')
    assert load_services(load_config(path, env={})) == "built"


def test_load_services_without_services_is_none(tmp_path: Path) -> None:
    assert load_services(load_config(toml(tmp_path, ""), env={})) is None


@pytest.mark.parametrize("target", ["runce_no_such_module_zz:make", "{module}:missing"])
def test_a_bad_services_import_path_is_a_config_error(
    tmp_path: Path, module_name: str, target: str
) -> None:
    write(tmp_path / f"{module_name}.py", "def make():\n    return 1\n")
    services = target.format(module=module_name)
    path = toml(tmp_path, f"services = {services!r}\n")
    with pytest.raises(ConfigError, match="cannot be imported") as excinfo:
        load_services(load_config(path, env={}))
    assert services in message(excinfo)
    assert str(path) in message(excinfo)


def test_the_library_keeps_one_service_per_directory_and_runce_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runce.runs import library
    from runce.stores import memory

    one, two = tmp_path / "one", tmp_path / "two"
    for root in (one, two):
        root.mkdir()
        (root / "runce.toml").write_text(f'store = "memory://{root.name}"\n')
    monkeypatch.delenv("RUNCE_WORKER_MAX_ATTEMPTS", raising=False)
    monkeypatch.chdir(one)
    try:
        first = library.service()
        assert library.service() is first  # enqueueing in a loop sets up nothing again
        monkeypatch.setenv("RUNCE_WORKER_MAX_ATTEMPTS", "7")
        changed = library.service()
        assert changed is not first
        assert changed.default_max_attempts == 7
        monkeypatch.chdir(two)
        assert library.service().queue is not first.queue
        monkeypatch.delenv("RUNCE_WORKER_MAX_ATTEMPTS")
        monkeypatch.chdir(one)
        assert library.service() is first
    finally:
        library.close_stores()
        library._configs.clear()
        memory.reset()


def test_a_configuration_given_as_keys_or_a_file_is_resolved_once_while_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Enqueueing in a loop with ``config={...}`` or a file's path reads and checks it once;
    a change to what it resolves from (its keys, the file, the directory a relative path
    resolves against, a ``RUNCE_`` variable or one that ``${NAME}`` names) is seen."""
    from runce.runs import library

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNCE_LOCK_TTL", raising=False)
    monkeypatch.setenv("RUNCE_TEST_NAME", "a")
    library._given.clear()  # room for this test's keys (the cache starts afresh when full)
    keys: dict[str, Any] = {"store": "memory://${RUNCE_TEST_NAME}", "worker": {"max_attempts": 2}}
    path = toml(tmp_path, 'store = "sqlite:///kept.db"\n')
    try:
        for given in (keys, define_config(**keys), path, str(path)):
            assert library._config(given) is library._config(given)
        first = library._config(keys)
        keys["worker"]["max_attempts"] = 3  # changed in place
        assert library._config(keys).worker.max_attempts == 3
        monkeypatch.setenv("RUNCE_TEST_NAME", "b")
        assert library._config(keys).store.url == "memory://b"
        monkeypatch.setenv("RUNCE_LOCK_TTL", "9")
        assert library._config(keys).lock.ttl == 9
        monkeypatch.delenv("RUNCE_LOCK_TTL")
        keys["worker"]["max_attempts"] = 2
        monkeypatch.setenv("RUNCE_TEST_NAME", "a")
        assert library._config(keys) is first  # as it was: the kept one again

        from_file = library._config(path)
        assert from_file.store.url == "sqlite:///kept.db"
        path.write_text('store = "sqlite:///other.db"\n')
        assert library._config(path).store.url == "sqlite:///other.db"
        relative = {"store": "sqlite:///here.db"}
        here = library._config(relative)
        (tmp_path / "sub").mkdir()
        monkeypatch.chdir(tmp_path / "sub")
        moved = library._config(relative)
        assert moved is not here
        assert (here.store.base_dir, moved.store.base_dir) == (tmp_path, tmp_path / "sub")
    finally:
        library._given.clear()


def test_keys_that_are_not_plain_data_or_are_wrong_are_resolved_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runce.runs import library

    monkeypatch.chdir(tmp_path)
    library._given.clear()  # what earlier tests in this process kept

    class Url(str):  # a str whose repr hides its value: never a key
        def __repr__(self) -> str:
            return "Url(***)"

    try:
        one = library._config({"store": Url("memory://one")})
        two = library._config({"store": Url("memory://two")})
        assert (one.store.url, two.store.url) == ("memory://one", "memory://two")
        for _ in range(2):  # an error is said every time, never kept
            with pytest.raises(ConfigError, match=r"lock\.ttl"):
                library._config({"lock": {"ttl": -1}})
        assert library._given == {}
    finally:
        library._given.clear()
