"""Bad data directories: ``socketlab serve`` exits 2 with one line, never a traceback.

Each case is a real ``serve`` process given a broken ``--data``: a file in the way, a
directory it cannot write (a read-only mount: root ignores permission bits), a database file
that is not SQLite, and a database with a newer schema than this socketlab knows.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from app.settings import load_settings
from app.store import DB_NAME, MIGRATIONS, StoreLimits, check_data_dir
from tests.tmpfs import mounted_tmpfs


def serve(data: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--web",
            "127.0.0.1:0",
            "--token",
            "t" * 20,
            "--listen",
            "tcp://127.0.0.1:0?mode=echo",
            "--data",
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def file_in_the_way(tmp_path: Path) -> Path:
    (tmp_path / "data").write_text("a file, not a directory")
    return tmp_path / "data"


def directory_in_place_of_the_database(tmp_path: Path) -> Path:
    (tmp_path / "data" / DB_NAME).mkdir(parents=True)
    return tmp_path / "data"


def not_a_database(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / DB_NAME).write_bytes(b"garbage, not SQLite\n" * 200)
    return tmp_path / "data"


def newer_schema(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    with closing(sqlite3.connect(tmp_path / "data" / DB_NAME)) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    return tmp_path / "data"


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (file_in_the_way, "a file is in the way"),
        (directory_in_place_of_the_database, "is not a file"),
        (not_a_database, "not a readable SQLite database"),
        (newer_schema, f"schema version {len(MIGRATIONS) + 5}, newer than this socketlab"),
    ],
)
def test_a_bad_data_directory_exits_2_with_one_line(
    tmp_path: Path, make: Callable[[Path], Path], words: str
) -> None:
    data = make(tmp_path)
    result = serve(data)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"socketlab: error: data directory {data}"), lines[0]
    assert words in lines[0]
    assert result.stdout == ""


def test_a_read_only_data_directory_exits_2_with_one_line(tmp_path: Path) -> None:
    with mounted_tmpfs(tmp_path / "ro", "ro,size=1m") as data:
        result = serve(data)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot write there: Read-only file system" in lines[0]


def test_a_newer_schema_is_not_changed_by_the_refusal(tmp_path: Path) -> None:
    data = newer_schema(tmp_path)
    assert serve(data).returncode == 2
    with closing(sqlite3.connect(data / DB_NAME)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS) + 5,)
        assert db.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)


def test_retention_limits_are_in_help_with_their_defaults() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    text = " ".join(result.stdout.split())
    for option, default in (
        ("--max-stored-runs", "10,000"),
        ("--max-audit-entries", "100,000"),
        ("--max-presets", "1,000"),
    ):
        assert option in text
        assert f"default {default}" in text


def test_retention_comes_from_the_config_file_and_flags_win(tmp_path: Path) -> None:
    config = tmp_path / "lab.toml"
    config.write_text("[retention]\nruns = 50\naudit = 70\n")
    settings = load_settings(config=str(config), retention={"audit": 9, "presets": None})
    assert settings.store_limits == StoreLimits(max_stored_runs=50, max_audit_entries=9)
    assert load_settings().store_limits == StoreLimits()


def test_check_data_dir_makes_a_fresh_directory(tmp_path: Path) -> None:
    check_data_dir(tmp_path / "new" / "data")
    assert (tmp_path / "new" / "data" / DB_NAME).is_file()
