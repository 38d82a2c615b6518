"""Stores an older mltag left inside analysed folders (`<root>/.mltag/results.sqlite`): read, never
written (they may sit on a read-only archive), and merged into the user's store once."""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from orchestrator.errors import StoreError
from orchestrator.store.schema import DONE_STATUSES, MIGRATIONS


class Target(Protocol):
    """What a merge needs of the store it merges into (orchestrator/store/db.py ResultStore)."""

    busy_timeout_s: float

    def reading(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...

    def writing(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...


READ_CHUNK = 256  # rows copied per statement

# What a legacy store's tables give this one: (table, the columns every version has, how rows join).
_LEGACY_COPIES = (
    ("runs", "run_id, started, finished, status, argv, options, mltag_version", "INSERT OR IGNORE"),
    ("images", "sha256, size_bytes, first_seen", "INSERT OR IGNORE"),
    ("image_paths", "sha256, path, first_seen, last_seen, last_run", "INSERT OR IGNORE"),
    ("run_models", "run_id, model, time, entry", "INSERT OR IGNORE"),
    (
        "cells",
        "sha256, model, kind, status, message, revision, model_version, env_key, options_key, device, "
        "load_s, warmup_s, inference_s, run_id, time, cell",
        "INSERT",
    ),
)


def import_store(store: Target, source: Path) -> int | None:
    """Merge a store an older mltag left inside an analysed folder into this one, reading it only
    (never written: it may sit on a read-only archive). Its cells join by the usual rule (a newer
    cell wins; a failed cell never replaces a done one). Returns the cells read, or None when this
    very file (same size and mtime) was merged before."""
    st = source.stat()
    key = str(source.resolve())
    with store.reading() as db:
        row = db.execute("SELECT size_bytes, mtime_ns FROM imports WHERE source = ?", (key,)).fetchone()
    if row == (st.st_size, st.st_mtime_ns):
        return None
    try:
        with _read_only_copy(source, store.busy_timeout_s) as old:
            cells = _merge(store, old, source)
            with store.writing() as db:
                db.execute(
                    "INSERT INTO imports (source, size_bytes, mtime_ns, time) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (source) DO UPDATE SET size_bytes = excluded.size_bytes, "
                    "mtime_ns = excluded.mtime_ns, time = excluded.time",
                    (key, st.st_size, st.st_mtime_ns, time.time()),
                )
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"cannot read the older results store {source}: {exc}") from exc
    return cells


def _merge(store: Target, old: sqlite3.Connection, source: Path) -> int:
    """Copy an older store's rows into this one, in one transaction; returns the cells read."""
    version = int(old.execute("PRAGMA user_version").fetchone()[0])
    if not 1 <= version <= len(MIGRATIONS):
        raise StoreError(f"{source} is not a results store this mltag can read (schema v{version})")
    done = ", ".join(f"'{s}'" for s in sorted(DONE_STATUSES))
    cells = 0
    tables = {r[0] for r in old.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    # Packed cells (v3) refer to vocabularies by content: copied as they are, they mean the same here.
    copies = (
        (("vocabularies", "id, model, revision, count, terms", "INSERT OR IGNORE"),) if "vocabularies" in tables else ()
    ) + _LEGACY_COPIES
    with store.writing() as db:
        for table, columns, verb in copies:
            sql = f"{verb} INTO {table} ({columns}) VALUES ({', '.join('?' * len(columns.split(',')))})"
            if table == "cells":
                updates = ", ".join(f"{c} = excluded.{c}" for c in columns.replace(" ", "").split(",")[2:])
                sql += (
                    f" ON CONFLICT (sha256, model) DO UPDATE SET {updates} WHERE excluded.time > cells.time "
                    f"AND (excluded.status IN ({done}) OR cells.status NOT IN ({done}))"
                )
            cursor = old.execute(f"SELECT {columns} FROM {table}")
            while rows := cursor.fetchmany(READ_CHUNK):
                db.executemany(sql, rows)
                cells += len(rows) if table == "cells" else 0
    return cells


@contextmanager
def _read_only_copy(path: Path, busy_timeout_s: float) -> Iterator[sqlite3.Connection]:
    """An SQLite file opened without writing anything beside it: even a read-only open of a WAL
    database writes its -shm file, so the file (and its -wal, which may hold the last cells of a
    killed run) is copied to a temporary folder and the copy is opened."""
    with tempfile.TemporaryDirectory(prefix="mltag-legacy-") as tmp:
        copy = Path(tmp) / path.name
        shutil.copyfile(path, copy)
        wal = path.with_name(path.name + "-wal")
        if wal.is_file():
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
        db = sqlite3.connect(copy, timeout=busy_timeout_s)
        try:
            yield db
        finally:
            db.close()
