"""The results store: every cell (image x model) in one SQLite file, written the moment it arrives.

Tables (schema version 1):
    runs        one row per `mltag analyze` / `mltag run`: started, finished, status, argv, options, version
    images      one row per image CONTENT (sha256); renamed, moved or copied files are the same image
    image_paths every path an image was seen at (absolute), with the run that last saw it there
    cells       the current cell of each (sha256, model): the whole cell dict as JSON, exactly as the
                runner gave it (before caption tags are added), plus indexed columns (status, revision,
                options key, env key, device, timings, run_id, time)
    run_models  per run and model, the result document's `models[]` entry (load timing, device, notes)

Durability: WAL journal and one short `BEGIN IMMEDIATE` transaction per cell. synchronous=NORMAL:
in WAL mode it never corrupts the file, and a committed cell survives the death of the process
(kill -9), because it is already in the WAL file the OS holds; only a power cut or OS crash can
lose the last commits, which a re-run recomputes. FULL would cost an fsync per cell for that case.
Readers never block the writer (WAL), so `mltag report` works while a run is going.

Resume: a cell is *done* when its status is deterministic (ok, no_tags, bad_image) and it was
computed with the same options key; a re-run skips done cells and retries the others (timeout,
crashed, error, skipped). A new cell replaces the stored one, except that a failed cell never
replaces a done one: a failure (a missing env, a timeout) loses no earlier result.

Options key: a stable hash of what changes a model's results: the adapter, hub id and pinned
revision, local weights (the path plus the names, sizes and mtimes of its files: rebuilt weights
are new weights), the load options (vocabulary expanded to its terms), the infer options after
--option overrides, and the requested dtype. Device, batch size, timeouts and --warmup are not in
it: they change how fast a result comes, not which result.

Schema versions: `PRAGMA user_version`; MIGRATIONS[i] takes a store from version i to i + 1, all
pending ones in one transaction. Version 2 is one function appended to MIGRATIONS. A store written
by a newer mltag is refused, never downgraded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.images import ImageRef, display_path, raw_path, unreadable_id

STORE_DIR = ".mltag"            # where an older mltag kept its store: inside the analysed folder
STORE_NAME = "results.sqlite"
DONE_STATUSES = frozenset({"ok", "no_tags", "bad_image"})
BUSY_TIMEOUT_S = 30.0
READ_CHUNK = 256           # images per read: memory stays flat however large the store
DOCUMENT_SCHEMA_VERSION = 1   # the result document's schema_version (schemas/result.schema.json)


class StoreError(Exception):
    """A store that cannot be used; the message says what to do."""


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


# MIGRATIONS[i] migrates version i -> i + 1. Append, never edit a released one.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2)
STORE_VERSION = len(MIGRATIONS)   # the version this code writes


@dataclass(frozen=True)
class CellMeta:
    """The indexed columns stored beside a cell's JSON."""

    options_key: str
    kind: str | None = None
    revision: str | None = None
    model_version: str | None = None
    env_key: str | None = None
    device: str | None = None
    load_s: float | None = None
    warmup_s: float | None = None


# What a legacy store's tables give this one: (table, the columns every version has, how rows join).
_LEGACY_COPIES = (
    ("runs", "run_id, started, finished, status, argv, options, mltag_version", "INSERT OR IGNORE"),
    ("images", "sha256, size_bytes, first_seen", "INSERT OR IGNORE"),
    ("image_paths", "sha256, path, first_seen, last_seen, last_run", "INSERT OR IGNORE"),
    ("run_models", "run_id, model, time, entry", "INSERT OR IGNORE"),
    ("cells", "sha256, model, kind, status, message, revision, model_version, env_key, options_key, device, "
              "load_s, warmup_s, inference_s, run_id, time, cell", "INSERT"),
)


# -- where the store lives ---------------------------------------------------------------------------
def store_home() -> Path:
    """The folder of mltag's user data: MLTAG_HOME, else the platform's user data folder
    (~/.local/share/mltag on Linux, ~/Library/Application Support/mltag on macOS, %LOCALAPPDATA%\\mltag
    on Windows). Never inside an analysed folder: archives are read, never written."""
    import platformdirs

    home = os.environ.get("MLTAG_HOME")
    return Path(home).expanduser() if home else platformdirs.user_data_path("mltag", appauthor=False)


def default_store_path() -> Path:
    """The one store every archive shares (images are keyed by content, every path is recorded)."""
    return store_home() / STORE_NAME


def legacy_stores(paths: Iterable[Path]) -> list[Path]:
    """Stores an older mltag left inside the analysed folders (`<root>/.mltag/results.sqlite`): in the
    analysed root (the folder given, a file's parent folder, or the common parent of several paths)
    or a folder above it. Read and imported, never written."""
    resolved = [Path(os.path.abspath(Path(p).expanduser())) for p in paths]
    if not resolved:
        return []
    if len(resolved) == 1:
        root = resolved[0] if resolved[0].is_dir() else resolved[0].parent
    else:
        root = Path(os.path.commonpath([str(p) for p in resolved]))
        if not root.is_dir():
            root = root.parent
    found = [folder / STORE_DIR / STORE_NAME for folder in (root, *root.parents)]
    return [p for p in found if p.is_file()]


# -- the options key ---------------------------------------------------------------------------------
def _weights_fingerprint(path: str) -> dict[str, Any]:
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {"path": str(root), "files": [(str(p.relative_to(root)) if p != root else p.name, p.stat().st_size,
                                          p.stat().st_mtime_ns) for p in files]}


def options_key(adapter: str, load_spec: Mapping[str, Any], infer_options: Mapping[str, Any]) -> str:
    """A stable hash of what changes a model's results (see the module docstring)."""
    local = load_spec.get("local_path")
    parts = {"adapter": adapter, "hub_id": load_spec.get("hub_id"), "revision": load_spec.get("revision"),
             "weights": _weights_fingerprint(local) if local and Path(local).exists() else local,
             "load": load_spec.get("options") or {}, "infer": dict(infer_options), "dtype": load_spec.get("dtype")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


class ResultStore:
    """One store file; thread-safe (one connection behind a lock: runs write from one thread per model)."""

    def __init__(self, path: Path, create: bool = True, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path).expanduser()
        if not self.path.exists():
            if not create:
                raise StoreError(f"no results store at {self.path}: `mltag analyze PATHS` creates one "
                                 f"(or pass --store PATH to name another)")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the results store folder {self.path.parent}: {exc}; "
                                 "pass --store PATH somewhere writable, or --no-store") from exc
        self._lock = threading.Lock()
        self._busy_timeout_s = busy_timeout_s
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves (BEGIN IMMEDIATE for every write).
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._explain(exc) from exc
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.Error as exc:
            self._db.close()
            raise self._explain(exc) from exc
        except StoreError:
            self._db.close()
            raise

    # -- opening ------------------------------------------------------------------------------------
    def _explain(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreError(f"the results store {self.path} is locked by another process (another mltag "
                              "writing to it?): wait for it to finish, or pass --store OTHER_PATH or --no-store")
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return StoreError(f"{self.path} is not a readable mltag results store ({text}): move it aside "
                              "(a re-run recomputes its results), or pass --store OTHER_PATH or --no-store")
        return StoreError(f"cannot use the results store {self.path}: {text}; pass --store OTHER_PATH or --no-store")

    def _version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        latest = len(MIGRATIONS)
        if self._version() == latest:
            return
        with self._write():
            version = self._version()   # re-read under the write lock: another process may have migrated
            if version > latest:
                raise StoreError(f"{self.path} was written by a newer mltag (store schema v{version}; this "
                                 f"mltag {__version__} reads up to v{latest}): upgrade mltag, or pass "
                                 "--store OTHER_PATH")
            tables = self._db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
            if version == 0 and tables:
                raise StoreError(f"{self.path} is an SQLite file but not an mltag results store (it has tables "
                                 "and no mltag schema version): pass --store OTHER_PATH")
            for step in MIGRATIONS[version:]:
                step(self._db)
            self._db.execute(f"PRAGMA user_version = {latest}")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, holding SQLite's write lock from the start (no deadlock on upgrade)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent snapshot while other processes write."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            finally:
                self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ------------------------------------------------------------------------------------
    def begin_run(self, run_id: str, started: float, options: Mapping[str, Any], argv: list[str]) -> None:
        with self._write() as db:
            db.execute("INSERT INTO runs (run_id, started, status, argv, options, mltag_version) "
                       "VALUES (?, ?, 'running', ?, ?, ?)", (run_id, started, _json(argv), _json(options),
                                                             __version__))

    def finish_run(self, run_id: str, finished: float, status: str = "finished") -> None:
        with self._write() as db:
            db.execute("UPDATE runs SET finished = ?, status = ? WHERE run_id = ?", (finished, status, run_id))

    def record_images(self, run_id: str, images: Iterable[ImageRef]) -> None:
        """Every image of a run, by content, and every path it was seen at (exact bytes kept for
        names that are not valid UTF-8). A path that now reads is no longer recorded as unreadable."""
        now = time.time()
        with self._write() as db:
            for img in images:
                path = os.path.abspath(img.path)
                text = display_path(path)
                db.execute("INSERT OR IGNORE INTO images (sha256, size_bytes, first_seen) VALUES (?, ?, ?)",
                           (img.sha256, img.size_bytes, now))
                if img.error is None:
                    db.execute("DELETE FROM image_paths WHERE sha256 = ? AND path = ?", (unreadable_id(path), text))
                db.execute("INSERT INTO image_paths (sha256, path, first_seen, last_seen, last_run, raw) "
                           "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sha256, path) DO UPDATE SET "
                           "last_seen = excluded.last_seen, last_run = excluded.last_run",
                           (img.sha256, text, now, now, run_id, raw_path(path)))

    def put_cell(self, run_id: str, sha256: str, model: str, cell: Mapping[str, Any], meta: CellMeta) -> bool:
        """Store one cell in its own transaction; False when an earlier done cell was kept instead."""
        status = str(cell.get("status"))
        done = ", ".join(f"'{s}'" for s in sorted(DONE_STATUSES))
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO cells (sha256, model, kind, status, message, revision, model_version, env_key, "
                "options_key, device, load_s, warmup_s, inference_s, run_id, time, cell) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (sha256, model) DO UPDATE SET kind = excluded.kind, status = excluded.status, "
                "message = excluded.message, revision = excluded.revision, "
                "model_version = excluded.model_version, env_key = excluded.env_key, "
                "options_key = excluded.options_key, device = excluded.device, load_s = excluded.load_s, "
                "warmup_s = excluded.warmup_s, inference_s = excluded.inference_s, run_id = excluded.run_id, "
                "time = excluded.time, cell = excluded.cell "
                f"WHERE excluded.status IN ({done}) OR cells.status NOT IN ({done})",
                (sha256, model, meta.kind, status, str(cell.get("message") or ""), meta.revision,
                 meta.model_version, meta.env_key, meta.options_key, meta.device, meta.load_s, meta.warmup_s,
                 cell.get("inference_s"), run_id, time.time(), _json(cell)))
            return cur.rowcount > 0

    def put_model(self, run_id: str, model: str, entry: Mapping[str, Any]) -> None:
        """The document's models[] entry for `model` in this run (written again as the run goes on)."""
        with self._write() as db:
            db.execute("INSERT INTO run_models (run_id, model, time, entry) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (run_id, model) DO UPDATE SET time = excluded.time, entry = excluded.entry",
                       (run_id, model, time.time(), _json(entry)))

    def import_store(self, source: Path) -> int | None:
        """Merge a store an older mltag left inside an analysed folder into this one, reading it only
        (never written: it may sit on a read-only archive). Its cells join by the usual rule (a newer
        cell wins; a failed cell never replaces a done one). Returns the cells read, or None when this
        very file (same size and mtime) was merged before."""
        st = source.stat()
        key = str(source.resolve())
        with self._read() as db:
            row = db.execute("SELECT size_bytes, mtime_ns FROM imports WHERE source = ?", (key,)).fetchone()
        if row == (st.st_size, st.st_mtime_ns):
            return None
        try:
            with _read_only_copy(source, self._busy_timeout_s) as old:
                cells = self._merge(old, source)
                with self._write() as db:
                    db.execute("INSERT INTO imports (source, size_bytes, mtime_ns, time) VALUES (?, ?, ?, ?) "
                               "ON CONFLICT (source) DO UPDATE SET size_bytes = excluded.size_bytes, "
                               "mtime_ns = excluded.mtime_ns, time = excluded.time",
                               (key, st.st_size, st.st_mtime_ns, time.time()))
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot read the older results store {source}: {exc}") from exc
        return cells

    def _merge(self, old: sqlite3.Connection, source: Path) -> int:
        """Copy an older store's rows into this one, in one transaction; returns the cells read."""
        version = int(old.execute("PRAGMA user_version").fetchone()[0])
        if not 1 <= version <= len(MIGRATIONS):
            raise StoreError(f"{source} is not a results store this mltag can read (schema v{version})")
        done = ", ".join(f"'{s}'" for s in sorted(DONE_STATUSES))
        cells = 0
        with self._write() as db:
            for table, columns, verb in _LEGACY_COPIES:
                sql = f"{verb} INTO {table} ({columns}) VALUES ({', '.join('?' * len(columns.split(',')))})"
                if table == "cells":
                    updates = ", ".join(f"{c} = excluded.{c}" for c in columns.replace(" ", "").split(",")[2:])
                    sql += (f" ON CONFLICT (sha256, model) DO UPDATE SET {updates} WHERE excluded.time > cells.time "
                            f"AND (excluded.status IN ({done}) OR cells.status NOT IN ({done}))")
                cursor = old.execute(f"SELECT {columns} FROM {table}")
                while rows := cursor.fetchmany(READ_CHUNK):
                    db.executemany(sql, rows)
                    cells += len(rows) if table == "cells" else 0
        return cells

    # -- reading ------------------------------------------------------------------------------------
    def done_statuses(self, model: str, key: str, sha256s: Iterable[str]) -> dict[str, str]:
        """Status of each cell of `model` already done with this options key, by sha256, among `sha256s`
        (the cells themselves stay in the store: outputs read them when they need them)."""
        wanted = set(sha256s)
        statuses = sorted(DONE_STATUSES)
        with self._read() as db:
            rows = db.execute(f"SELECT sha256, status FROM cells WHERE model = ? AND options_key = ? AND status IN "
                              f"({', '.join('?' * len(statuses))})", (model, key, *statuses)).fetchall()
        return {sha: status for sha, status in rows if sha in wanted}

    def run_cells(self, run_id: str, model: str) -> set[str]:
        """The images (sha256) `run_id` stored a cell of `model` for."""
        with self._read() as db:
            return {r[0] for r in db.execute("SELECT sha256 FROM cells WHERE run_id = ? AND model = ?",
                                             (run_id, model))}

    def model_entry(self, model: str) -> dict[str, Any] | None:
        """The latest stored models[] entry of `model` (None when it never ran)."""
        with self._read() as db:
            row = db.execute("SELECT entry FROM run_models WHERE model = ? ORDER BY time DESC LIMIT 1",
                             (model,)).fetchone()
        return json.loads(row[0]) if row else None

    def models(self) -> list[str]:
        """The models with stored cells, in the order they were first run."""
        with self._read() as db:
            return self._model_order(db)

    def runs(self) -> list[dict[str, Any]]:
        """Every run, oldest first, with the options it ran with."""
        with self._read() as db:
            return sorted(self._runs(db, with_options=True), key=lambda r: r["started"])

    def cells_of(self, sha256s: Iterable[str], models: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
        """The stored cells of these images ({sha256: {model: cell}}), as the runners gave them."""
        shas = list(dict.fromkeys(sha256s))
        names = list(models) if models is not None else None
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(shas), READ_CHUNK):
            chunk = shas[i:i + READ_CHUNK]
            sql = f"SELECT sha256, model, cell FROM cells WHERE sha256 IN ({', '.join('?' * len(chunk))})"
            args: list[Any] = list(chunk)
            if names is not None:
                sql += f" AND model IN ({', '.join('?' * len(names))})"
                args += names
            with self._read() as db:
                for sha, model, text in db.execute(sql, args):
                    out.setdefault(sha, {})[model] = json.loads(text)
        return out

    def iter_images(self, under: Iterable[Path] | None = None) -> Iterator[dict[str, Any]]:
        """The stored images, by path, one short read per chunk (memory does not grow with the store).

        under: only images with a recorded path under one of these (default: every image).
        Per image content: the paths seen by the latest run that saw it (under `under`) are listed,
        the first as the image, the others with `duplicate_of` it; `seen_as` lists every other path
        it was recorded at; `path_bytes` (base64) the exact bytes of a name that is not UTF-8."""
        under_sql, under_args = _under_clause(under, "{col}")
        last: tuple[str, str] = ("", "")
        while True:
            sql = f"""
                SELECT p.path, p.sha256, i.size_bytes, p.raw,
                       (SELECT min(c.path) FROM image_paths c WHERE c.sha256 = p.sha256 AND c.last_run = p.last_run
                        AND {under_sql.format(col="c.path")}) AS first
                FROM image_paths p JOIN images i ON i.sha256 = p.sha256
                WHERE {under_sql.format(col="p.path")} AND (p.path, p.sha256) > (?, ?)
                  AND p.last_run = (SELECT q.last_run FROM image_paths q WHERE q.sha256 = p.sha256
                                    AND {under_sql.format(col="q.path")} ORDER BY q.last_seen DESC LIMIT 1)
                ORDER BY p.path, p.sha256 LIMIT {READ_CHUNK}"""
            args = [*under_args, *under_args, *last, *under_args]
            with self._read() as db:
                rows = db.execute(sql, args).fetchall()
                seen = {}
                if rows:
                    shas = sorted({r[1] for r in rows})
                    for sha, path in db.execute(f"SELECT sha256, path FROM image_paths WHERE sha256 IN "
                                                f"({', '.join('?' * len(shas))}) ORDER BY path", shas):
                        seen.setdefault(sha, []).append(path)
            if not rows:
                return
            for path, sha, size, raw, first in rows:
                entry: dict[str, Any] = {"path": path, "sha256": sha, "size_bytes": size}
                if raw is not None:
                    entry["path_bytes"] = base64.b64encode(raw).decode()
                if first is not None and path != first:
                    entry["duplicate_of"] = first
                others = [p for p in seen.get(sha, []) if p != path]
                if others:
                    entry["seen_as"] = others
                yield entry
            last = (rows[-1][0], rows[-1][1])

    def runs_used(self, models: Iterable[str], under: Iterable[Path] | None = None) -> list[dict[str, Any]]:
        """The runs whose cells of `models` (for images under `under`) are the ones stored, oldest first,
        each with `last_cell`: the time of its latest such cell."""
        names = list(models)
        under_sql, under_args = _under_clause(under, "p.path")
        with self._read() as db:
            rows = db.execute(
                f"SELECT c.run_id, max(c.time) FROM cells c WHERE c.model IN ({', '.join('?' * len(names))}) "
                f"AND EXISTS (SELECT 1 FROM image_paths p WHERE p.sha256 = c.sha256 AND {under_sql}) "
                "GROUP BY c.run_id", [*names, *under_args]).fetchall()
            runs = {r["run_id"]: r for r in self._runs(db)}
        used = [dict(runs[run_id], last_cell=t) for run_id, t in rows if run_id in runs]
        return sorted(used, key=lambda r: r["started"])

    def model_entries(self, models: Iterable[str], under: Iterable[Path] | None = None) -> list[dict[str, Any]]:
        """Each model's models[] entry: that of the latest run that gave its shown cells; else its latest
        entry at all; else what its latest cell says."""
        under_sql, under_args = _under_clause(under, "p.path")
        out = []
        with self._read() as db:
            for name in models:
                contributing = {r[0] for r in db.execute(
                    "SELECT DISTINCT c.run_id FROM cells c WHERE c.model = ? AND EXISTS (SELECT 1 FROM image_paths p "
                    f"WHERE p.sha256 = c.sha256 AND {under_sql})", [name, *under_args])}
                mine = db.execute("SELECT run_id, entry FROM run_models WHERE model = ? ORDER BY time",
                                  (name,)).fetchall()
                useful = [e for e in mine if e[0] in contributing] or mine
                if useful:
                    out.append(json.loads(useful[-1][1]))
                    continue
                latest = db.execute("SELECT kind, revision, model_version, device, load_s, warmup_s FROM cells "
                                    "WHERE model = ? ORDER BY time DESC LIMIT 1", (name,)).fetchone()
                out.append(_entry_from_cell(name, latest))
        return out

    @staticmethod
    def _runs(db: sqlite3.Connection, with_options: bool = False) -> list[dict[str, Any]]:
        rows = db.execute("SELECT run_id, started, finished, status, argv, mltag_version, options FROM runs").fetchall()
        return [{"run_id": r[0], "started": r[1], "finished": r[2], "status": r[3], "argv": json.loads(r[4]),
                 "mltag_version": r[5], **({"options": json.loads(r[6])} if with_options else {})} for r in rows]

    @staticmethod
    def _model_order(db: sqlite3.Connection) -> list[str]:
        """Models with cells, by the time they first ran (their first models[] entry, else first cell)."""
        rows = db.execute("SELECT model, min(time) FROM cells GROUP BY model").fetchall()
        first = dict(db.execute("SELECT model, min(time) FROM run_models GROUP BY model").fetchall())
        return [m for m, t in sorted(rows, key=lambda r: (first.get(r[0], r[1]), r[0]))]


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


def _entry_from_cell(name: str, latest: tuple | None) -> dict[str, Any]:
    """A models[] entry when none was stored (cells written by hand): what the latest cell says."""
    kind, revision, model_version, device, load_s, warmup_s = latest or (None,) * 6
    return {"name": name, "kind": kind or "tagger", "adapter": "", "env": "", "hub_id": "", "revision": revision or "",
            "weights": None, "status": "ok" if latest else "skipped", "message": "no model information stored",
            "device": device, "dtype": None, "model_version": model_version, "load_s": load_s,
            "warmup_s": warmup_s, "notes": []}


def _under_clause(under: Iterable[Path] | None, column: str) -> tuple[str, list[Any]]:
    """SQL (and its arguments) for "`column` is one of these paths or below one of them"."""
    if under is None:
        return "1", []
    roots = [display_path(os.path.abspath(Path(p).expanduser())) for p in under]
    parts: list[str] = []
    args: list[Any] = []
    for root in roots:
        prefix = root if root.endswith(os.sep) else root + os.sep
        parts.append(f"({column} = ? OR substr({column}, 1, ?) = ?)")
        args += [root, len(prefix), prefix]
    return "(" + " OR ".join(parts) + ")" if parts else "0", args
