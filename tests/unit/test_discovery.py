"""Task files on disk: ids, order, checksums and skip variables (T-1, T-2, T-6)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from runce.errors import TaskLoadError
from runce.tasks.discovery import checksum_of, discover, skip_variable


def touch(path: Path, text: str = "import runce\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ---------------------------------------------------------------------------------------
# Checksums (T-2)
# ---------------------------------------------------------------------------------------


def test_checksum_is_sha256_of_the_bytes() -> None:
    data = b"import runce\nprint('hi')\n"
    assert checksum_of(data) == "sha256:" + hashlib.sha256(data).hexdigest()


def test_checksum_shape() -> None:
    value = checksum_of(b"x")
    prefix, _, digest = value.partition(":")
    assert prefix == "sha256"
    assert len(digest) == 64
    assert int(digest, 16) >= 0


def test_checksum_ignores_line_endings() -> None:
    lf = b"line one\nline two\n\nline four\n"
    crlf = lf.replace(b"\n", b"\r\n")
    cr = lf.replace(b"\n", b"\r")
    assert checksum_of(crlf) == checksum_of(lf)
    assert checksum_of(cr) == checksum_of(lf)
    assert checksum_of(b"a\r\nb\rc\n") == checksum_of(b"a\nb\nc\n")


def test_checksum_differs_for_different_text() -> None:
    assert checksum_of(b"run()\n") != checksum_of(b"run() \n")
    assert checksum_of(b"a\n") != checksum_of(b"a\n\n")
    assert checksum_of(b"") != checksum_of(b"\n")


def test_discovered_checksum_is_of_the_file(tmp_path: Path) -> None:
    path = touch(tmp_path / "2025-01.a.py", "x = 1\r\n")
    (found,) = discover(tmp_path)
    assert found.checksum == checksum_of(b"x = 1\n")
    assert found.checksum == checksum_of(path.read_bytes())


# ---------------------------------------------------------------------------------------
# discover (T-1, T-2)
# ---------------------------------------------------------------------------------------


def test_discover_sorts_by_id_and_recurses(tmp_path: Path) -> None:
    touch(tmp_path / "2025-03-01T000000.c.py")
    touch(tmp_path / "2025-01-01T000000.a.py")
    touch(tmp_path / "billing" / "2025-02-01T000000.b.py")
    touch(tmp_path / "billing" / "deep" / "2024-12-31T235959.z.py")
    found = discover(tmp_path)
    assert [t.id for t in found] == [
        "2024-12-31T235959.z",
        "2025-01-01T000000.a",
        "2025-02-01T000000.b",
        "2025-03-01T000000.c",
    ]
    assert found[0].path == tmp_path / "billing" / "deep" / "2024-12-31T235959.z.py"
    assert found[2].path == tmp_path / "billing" / "2025-02-01T000000.b.py"


def test_the_id_is_the_file_stem(tmp_path: Path) -> None:
    touch(tmp_path / "2025-10-01T120000.init-queues.py")
    (found,) = discover(tmp_path)
    assert found.id == "2025-10-01T120000.init-queues"


def test_discover_ignores_private_hidden_and_non_python_files(tmp_path: Path) -> None:
    touch(tmp_path / "2025-01.keep.py")
    touch(tmp_path / "_helpers.py")
    touch(tmp_path / "__init__.py")
    touch(tmp_path / ".2025-01.hidden.py")
    touch(tmp_path / "2025-01.notes.md")
    touch(tmp_path / "2025-01.data.json")
    touch(tmp_path / "2025-01.old.py.bak")
    touch(tmp_path / "2025-01.compiled.pyc")
    touch(tmp_path / "__pycache__" / "2025-01.cached.py")
    touch(tmp_path / "_shared" / "2025-01.private-folder.py")
    touch(tmp_path / ".git" / "2025-01.hidden-folder.py")
    touch(tmp_path / "sub" / "_x.py")
    touch(tmp_path / "sub" / ".y.py")
    touch(tmp_path / "sub" / "2025-02.nested.py")
    assert [t.id for t in discover(tmp_path)] == ["2025-01.keep", "2025-02.nested"]


def test_an_empty_tasks_folder_has_no_tasks(tmp_path: Path) -> None:
    assert discover(tmp_path) == []


def test_one_id_in_two_folders_is_an_error_naming_both(tmp_path: Path) -> None:
    first = touch(tmp_path / "a" / "2025-01.same.py")
    second = touch(tmp_path / "b" / "2025-01.same.py")
    with pytest.raises(TaskLoadError) as excinfo:
        discover(tmp_path)
    text = str(excinfo.value)
    assert "'2025-01.same'" in text
    assert str(first) in text
    assert str(second) in text


def test_a_missing_tasks_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-tasks-here"
    with pytest.raises(TaskLoadError, match="does not exist") as excinfo:
        discover(missing)
    assert str(missing) in str(excinfo.value)
    assert "runce make" in str(excinfo.value)


# ---------------------------------------------------------------------------------------
# Skip variables (T-6)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task_id", "variable"),
    [
        ("2026-05-20.fix-roles", "RUNCE_SKIP_2026_05_20_FIX_ROLES"),
        ("2025-10-01T120000.init-queues", "RUNCE_SKIP_2025_10_01T120000_INIT_QUEUES"),
        ("a--b..c", "RUNCE_SKIP_A_B_C"),
        ("already_UPPER_9", "RUNCE_SKIP_ALREADY_UPPER_9"),
        ("café au lait", "RUNCE_SKIP_CAF_AU_LAIT"),
    ],
)
def test_skip_variable(task_id: str, variable: str) -> None:
    assert skip_variable(task_id) == variable


def test_skip_variable_keeps_a_trailing_run_of_punctuation() -> None:
    assert skip_variable("2026-05-20.fix-roles!") == "RUNCE_SKIP_2026_05_20_FIX_ROLES_"
