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

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import __version__
from orchestrator.images import ImageRef

STORE_DIR = ".mltag"
STORE_NAME = "results.sqlite"
DONE_STATUSES = frozenset({"ok", "no_tags", "bad_image"})
BUSY_TIMEOUT_S = 30.0
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


# MIGRATIONS[i] migrates version i -> i + 1. Append, never edit a released one.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1,)
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


# -- where the store lives ---------------------------------------------------------------------------
def default_store_path(paths: Iterable[Path]) -> Path:
    """`.mltag/results.sqlite` in the analysed root: one folder itself, a file's parent, or the
    common parent folder of several paths."""
    resolved = [Path(p).expanduser().resolve() for p in paths]
    if not resolved:
        return Path.cwd() / STORE_DIR / STORE_NAME
    if len(resolved) == 1:
        root = resolved[0] if resolved[0].is_dir() else resolved[0].parent
    else:
        root = Path(os.path.commonpath([str(p) for p in resolved]))
        if not root.is_dir():
            root = root.parent
    return root / STORE_DIR / STORE_NAME


def find_store(paths: Iterable[Path]) -> Path:
    """The store for these paths: the default one, else the nearest `.mltag/results.sqlite` above it
    (so `mltag report photos/ward` finds the store of `mltag analyze photos`). Not checked to exist."""
    default = default_store_path(paths)
    if default.exists():
        return default
    for folder in default.parent.parent.parents:
        candidate = folder / STORE_DIR / STORE_NAME
        if candidate.is_file():
            return candidate
    return default


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
        """Every image of a run, by content, and every path it was seen at."""
        now = time.time()
        with self._write() as db:
            for img in images:
                db.execute("INSERT OR IGNORE INTO images (sha256, size_bytes, first_seen) VALUES (?, ?, ?)",
                           (img.sha256, img.size_bytes, now))
                db.execute("INSERT INTO image_paths (sha256, path, first_seen, last_seen, last_run) "
                           "VALUES (?, ?, ?, ?, ?) ON CONFLICT (sha256, path) DO UPDATE SET "
                           "last_seen = excluded.last_seen, last_run = excluded.last_run",
                           (img.sha256, str(Path(img.path).resolve()), now, now, run_id))

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

    # -- reading ------------------------------------------------------------------------------------
    def done_cells(self, model: str, key: str, sha256s: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Cells of `model` already done with this options key, by sha256, among `sha256s`."""
        wanted = set(sha256s)
        statuses = sorted(DONE_STATUSES)
        with self._read() as db:
            rows = db.execute(f"SELECT sha256, cell FROM cells WHERE model = ? AND options_key = ? AND status IN "
                              f"({', '.join('?' * len(statuses))})", (model, key, *statuses)).fetchall()
        return {sha: json.loads(text) for sha, text in rows if sha in wanted}

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

    def document(self, under: Iterable[Path] | None = None, models: Iterable[str] | None = None,
                 finish: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
        """A result document (schemas/result.schema.json) rebuilt from the store, running nothing.

        under: only images with a recorded path under one of these (default: every image).
        models: these models, in this order (default: every stored model, oldest first).
        finish(kind, cell): what the pipeline adds to a cell for display (caption tags).
        Per image content: the paths seen by the latest run that saw it are listed (the first as the
        image, the others as duplicate_of it); `seen_as` lists every other path it was recorded at.
        """
        roots = [Path(p).expanduser().resolve() for p in under] if under is not None else None
        with self._read() as db:
            path_rows = db.execute("SELECT sha256, path, last_run, last_seen FROM image_paths").fetchall()
            sizes = dict(db.execute("SELECT sha256, size_bytes FROM images").fetchall())
            cell_rows = db.execute("SELECT sha256, model, kind, revision, model_version, device, load_s, warmup_s, "
                                   "run_id, time, cell FROM cells").fetchall()
            entry_rows = db.execute("SELECT run_id, model, time, entry FROM run_models").fetchall()
            runs = {r["run_id"]: r for r in self._runs(db)}
            order = self._model_order(db)
        images = self._image_entries(path_rows, sizes, roots)
        selected = {img["sha256"] for img in images}
        cells: dict[str, dict[str, Any]] = {}
        rows_by_model: dict[str, list[tuple]] = {}
        for row in cell_rows:
            if row[0] in selected:
                cells.setdefault(row[0], {})[row[1]] = json.loads(row[10])
                rows_by_model.setdefault(row[1], []).append(row)
        names = list(models) if models is not None else [m for m in order if m in rows_by_model]
        entries = {name: self._model_entry(name, rows_by_model.get(name, []), entry_rows, runs) for name in names}
        missing = {"status": "skipped", "message": "no result stored for this model and image"}
        for img in images:
            stored = cells.get(img["sha256"], {})
            results = {}
            for name in names:
                result = stored.get(name)
                if result is None:
                    result = dict(missing, fix=f"mltag run {name} {img['path']}")
                elif finish is not None:
                    result = finish(entries[name]["kind"], result)
                results[name] = result
            img["results"] = results
        used = sorted({r[8] for name in names for r in rows_by_model.get(name, [])},
                      key=lambda run_id: runs[run_id]["started"] if run_id in runs else 0.0)
        used_runs = [runs[r] for r in used if r in runs]
        first = min((r["started"] for r in used_runs), default=time.time())
        last = max((r[9] for name in names for r in rows_by_model.get(name, [])), default=first)
        return {
            "schema_version": DOCUMENT_SCHEMA_VERSION, "mltag_version": __version__,
            "run_id": used[-1] if used else "none", "started": _iso(first),
            "duration_s": round(max(0.0, last - first), 3),
            "options": {"source": "store", "store": str(self.path), "runs": [
                dict(r, started=_iso(r["started"]), finished=_iso(r["finished"]) if r["finished"] else None)
                for r in used_runs]},
            "models": [entries[name] for name in names],
            "images": images,
        }

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

    @staticmethod
    def _image_entries(path_rows: list[tuple], sizes: dict[str, int],
                       roots: list[Path] | None) -> list[dict[str, Any]]:
        by_sha: dict[str, list[tuple]] = {}
        for row in path_rows:
            by_sha.setdefault(row[0], []).append(row)
        out = []
        for sha, rows in by_sha.items():
            shown = [r for r in rows if roots is None or any(Path(r[1]).is_relative_to(root) for root in roots)]
            if not shown:
                continue
            latest = max(shown, key=lambda r: r[3])[2]
            current = sorted(r[1] for r in shown if r[2] == latest)
            every = sorted(r[1] for r in rows)
            for path in current:
                entry: dict[str, Any] = {"path": path, "sha256": sha, "size_bytes": sizes.get(sha, 0)}
                if path != current[0]:
                    entry["duplicate_of"] = current[0]
                others = [p for p in every if p != path]
                if others:
                    entry["seen_as"] = others
                out.append(entry)
        return sorted(out, key=lambda e: e["path"])

    @staticmethod
    def _model_entry(name: str, rows: list[tuple], entry_rows: list[tuple],
                     runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """The entry of the latest run that gave this model's shown cells; else its latest entry at all."""
        contributing = {r[8] for r in rows}
        mine = sorted((e for e in entry_rows if e[1] == name), key=lambda e: e[2])
        useful = [e for e in mine if e[0] in contributing] or mine
        if useful:
            return json.loads(useful[-1][3])
        latest = max(rows, key=lambda r: r[9]) if rows else None
        # No entry was stored (cells written by hand): what the cells themselves say.
        return {"name": name, "kind": (latest[2] if latest else None) or "tagger", "adapter": "", "env": "",
                "hub_id": "", "revision": (latest[3] if latest else None) or "", "weights": None,
                "status": "ok" if rows else "skipped", "message": "no model information stored",
                "device": latest[5] if latest else None, "dtype": None,
                "model_version": latest[4] if latest else None, "load_s": latest[6] if latest else None,
                "warmup_s": latest[7] if latest else None, "notes": []}
