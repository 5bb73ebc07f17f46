"""The data directory: checked before the database is opened, every problem one line.

A data directory goes wrong in a few ways that a person fixes by hand: a file where the
directory should be, a directory the lab cannot write (permissions, a read-only mount), a
database file that is not SQLite (or is damaged), a database made by a newer socketlab.
Each is a :class:`~app.errors.DataDirError` naming the directory and what to do, so the
CLI can say it in one line and exit 2 instead of showing a traceback.
"""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

from app.errors import DataDirError
from app.writebehind import describe_failure


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the database at ``path``: synchronous writes, a busy timeout.

    It changes nothing in the file; the store switches it to WAL once it has read the
    schema version (a newer database is refused untouched).
    """
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA busy_timeout=5000")
    except BaseException:
        db.close()
        raise
    return db


def check_directory(data_dir: Path, db_name: str) -> None:
    """Make ``data_dir`` if needed and check that files can be made in it.

    Raises:
        DataDirError: A file is in the way, or the directory cannot be made or written.
    """
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as exc:
        raise DataDirError(
            f"data directory {data_dir}: a file is in the way ({exc.filename} is not a directory)",
            "data",
        ) from exc
    except OSError as exc:
        raise DataDirError(
            f"data directory {data_dir}: cannot make it: {exc.strerror}", "data"
        ) from exc
    path = data_dir / db_name
    if path.exists() and not path.is_file():
        raise DataDirError(f"data directory {data_dir}: {path} is not a file", "data")
    try:
        # Permission bits do not say it all (root, read-only mounts): make a file and see.
        with tempfile.TemporaryFile(dir=data_dir):
            pass
    except OSError as exc:
        raise DataDirError(
            f"data directory {data_dir}: cannot write there: {exc.strerror}", "data"
        ) from exc


def data_error(data_dir: Path, exc: sqlite3.Error) -> DataDirError:
    """The one-line error for SQLite refusing the database file at start-up."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        what = f"the database file is not a readable SQLite database ({exc}); move it away"
    elif name.startswith("SQLITE_CANTOPEN"):
        what = f"the database file cannot be opened ({exc})"
    else:
        what = describe_failure(exc, str(data_dir))
    return DataDirError(f"data directory {data_dir}: {what}", "data")


def newer_schema_error(data_dir: Path, version: int, known: int) -> DataDirError:
    """The database was made by a newer socketlab: refused, never opened or changed."""
    return DataDirError(
        f"data directory {data_dir}: the database has schema version {version}, newer than "
        f"this socketlab knows ({known}); run a newer socketlab or give another --data",
        "data",
    )
