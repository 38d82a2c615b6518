"""The results store's tables and their versions.

Tables:
    runs        one row per `mltag analyze` / `mltag run`: started, finished, status, argv, options, version
    images      one row per image CONTENT (sha256); renamed, moved or copied files are the same image
    image_paths every path an image was seen at (absolute), with the run that last saw it there; `raw`
                holds a path's exact bytes when it is not valid UTF-8 (v2)
    cells       the current cell of each (sha256, model): the whole cell dict as JSON, exactly as the
                runner gave it (before caption tags are added), plus indexed columns (status, revision,
                options key, env key, device, timings, run_id, time)
    run_models  per run and model, the result document's `models[]` entry (load timing, device, notes)
    imports     stores an older mltag left inside analysed folders, already merged (v2)
    labels      the user's truth, per (sha256, tag): a yes / no verdict, who and when (v3); keyed by content,
                so a moved or renamed photo keeps its labels, and not tied to `images` (labels may come
                from a CSV before the photo is analysed)
    labels_done per image, "this photo's truth set is complete" (who, when) (v3): only done photos count
    label_log   every label change, append-only (v3): the last write per tag wins in `labels`, and what
                it overwrote stays here
    file_stats  the stat cache: per path (its exact bytes), the device, inode, size and mtime it had
                when its content was hashed, and that sha256; a file whose stat is unchanged is not
                read again (v4)
    vocabularies the terms of a score map ({term: score} over a model's vocabulary), stored once,
                content-addressed; a packed cell refers to them by id (v4, orchestrator/store/cellpack.py)

`cells.cell` holds JSON text (a small cell, and every cell before v4) or a packed blob (cellpack.py);
both read back as the same dict.

Schema versions: `PRAGMA user_version`; MIGRATIONS[i] takes a store from version i to i + 1, all
pending ones in one transaction (orchestrator/store/db.py). A store written by a newer mltag is
refused, never downgraded.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from schemas.status import SUCCESS, CellStatus

DONE_STATUSES = SUCCESS | {CellStatus.BAD_IMAGE}  # deterministic: a re-run skips these cells


def _v1(db: sqlite3.Connection) -> None:
    for statement in (
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY, started REAL NOT NULL, finished REAL,
            status TEXT NOT NULL,                 -- running | finished | interrupted (Ctrl-C); killed: stays running
            argv TEXT NOT NULL, options TEXT NOT NULL, mltag_version TEXT NOT NULL)""",
        """CREATE TABLE images (
            sha256 TEXT PRIMARY KEY, size_bytes INTEGER NOT NULL, first_seen REAL NOT NULL)""",
        """CREATE TABLE image_paths (
            sha256 TEXT NOT NULL REFERENCES images(sha256), path TEXT NOT NULL,
            first_seen REAL NOT NULL, last_seen REAL NOT NULL, last_run TEXT NOT NULL,
            PRIMARY KEY (sha256, path))""",
        "CREATE INDEX image_paths_by_path ON image_paths(path)",
        """CREATE TABLE cells (
            sha256 TEXT NOT NULL REFERENCES images(sha256), model TEXT NOT NULL, kind TEXT,
            status TEXT NOT NULL, message TEXT NOT NULL,
            revision TEXT, model_version TEXT, env_key TEXT, options_key TEXT NOT NULL,
            device TEXT, load_s REAL, warmup_s REAL, inference_s REAL,
            run_id TEXT NOT NULL REFERENCES runs(run_id), time REAL NOT NULL,
            cell TEXT NOT NULL,                   -- JSON, as the runner gave it
            PRIMARY KEY (sha256, model))""",
        "CREATE INDEX cells_by_model ON cells(model, options_key, status)",
        "CREATE INDEX cells_by_run ON cells(run_id)",
        """CREATE TABLE run_models (
            run_id TEXT NOT NULL REFERENCES runs(run_id), model TEXT NOT NULL, time REAL NOT NULL,
            entry TEXT NOT NULL,                  -- JSON: the result document's models[] entry
            PRIMARY KEY (run_id, model))""",
    ):
        db.execute(statement)


def _v2(db: sqlite3.Connection) -> None:
    """Any file name: `raw` holds a path's exact bytes when its text (`path`, with undecodable bytes
    written as \\xNN) is lossy. `imports`: legacy in-folder stores already merged into this one."""
    db.execute("ALTER TABLE image_paths ADD COLUMN raw BLOB")
    db.execute("""CREATE TABLE imports (
        source TEXT PRIMARY KEY, size_bytes INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, time REAL NOT NULL)""")


def _v3(db: sqlite3.Connection) -> None:
    """Labels: the user's yes / no per (image content, normalised tag), a per-image "done" marker, and the
    log of every change (two browser tabs labelling one store: the last write wins, none is lost)."""
    for statement in (
        """CREATE TABLE labels (
            sha256 TEXT NOT NULL, tag TEXT NOT NULL,
            verdict INTEGER NOT NULL CHECK (verdict IN (0, 1)),   -- 1: the tag is true of the photo, 0: it is not
            who TEXT NOT NULL, time REAL NOT NULL,
            PRIMARY KEY (sha256, tag))""",
        """CREATE TABLE labels_done (
            sha256 TEXT PRIMARY KEY, who TEXT NOT NULL, time REAL NOT NULL)""",
        """CREATE TABLE label_log (
            sha256 TEXT NOT NULL, tag TEXT,       -- NULL: the done marker
            action TEXT NOT NULL,                 -- yes | no | removed | done | undone
            who TEXT NOT NULL, time REAL NOT NULL)""",
        "CREATE INDEX label_log_by_image ON label_log(sha256, time)",
    ):
        db.execute(statement)


def _v4(db: sqlite3.Connection) -> None:
    """Re-runs that read nothing (`file_stats`) and a compact store: every cell rewritten in the packed
    form (cellpack.py), in the migrations' one transaction. Self-contained: its own tables, its own
    conversion."""
    from orchestrator.store import cellpack

    db.execute("""CREATE TABLE file_stats (
        path BLOB PRIMARY KEY,                -- the absolute path's exact bytes (any name, UTF-8 or not)
        device INTEGER NOT NULL, inode INTEGER NOT NULL, size_bytes INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL, hashed REAL NOT NULL)""")
    db.execute("""CREATE TABLE vocabularies (
        id BLOB PRIMARY KEY,                  -- sha256 of the terms' JSON, first 16 bytes
        model TEXT NOT NULL, revision TEXT,   -- the model (and revision) that first stored it
        count INTEGER NOT NULL, terms BLOB NOT NULL)""")  # zstd-compressed JSON list
    last = -1
    while rows := db.execute(
        "SELECT rowid, model, revision, cell FROM cells WHERE rowid > ? AND typeof(cell) = 'text' "
        "ORDER BY rowid LIMIT 256",
        (last,),
    ).fetchall():
        for rowid, model, revision, text in rows:
            packed, vocabularies = cellpack.pack(cellpack.unpack(text, lambda vid: []))
            for vid, terms in vocabularies.items():
                db.execute(
                    "INSERT OR IGNORE INTO vocabularies (id, model, revision, count, terms) VALUES (?, ?, ?, ?, ?)",
                    (vid, model, revision, len(terms), cellpack.pack_terms(terms)),
                )
            if isinstance(packed, bytes):
                db.execute("UPDATE cells SET cell = ? WHERE rowid = ?", (packed, rowid))
        last = rows[-1][0]


# MIGRATIONS[i] migrates version i -> i + 1. Append, never edit a released one.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2, _v3, _v4)
STORE_VERSION = len(MIGRATIONS)  # the version this code writes
