"""The results store: every cell (image x model) in one SQLite file, written the moment it arrives.

The tables and their versions: orchestrator/store/schema.py. Where the file lives:
orchestrator/store/location.py. Which cells a re-run reuses: orchestrator/store/keys.py. The user's
labels (set_label, mark_done, label_rows, ...): orchestrator/store/labels.py. Every
sqlite3 error is translated here, at the store's edge, into a StoreError that names the fix.

Over 350 lines on purpose: every SQL statement of the store is in this one class, so its transaction
rules (one writer behind a lock, chunked reads, errors translated) are read and changed in one place.

Durability: WAL journal and one short `BEGIN IMMEDIATE` transaction per cell. synchronous=NORMAL:
in WAL mode it never corrupts the file, and a committed cell survives the death of the process
(kill -9), because it is already in the WAL file the OS holds; only a power cut or OS crash can
lose the last commits, which a re-run recomputes. FULL would cost an fsync per cell for that case.
Readers never block the writer (WAL), so `mltag report` works while a run is going.

Resume: a cell is *done* when its status is deterministic (ok, no_tags, bad_image) and it was
computed with the same options key; a re-run skips done cells and retries the others (timeout,
crashed, error, skipped). A new cell replaces the stored one, except that a failed cell never
replaces a done one: a failure (a missing env, a timeout) loses no earlier result.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from orchestrator import __version__, jsontext
from orchestrator.errors import StoreError
from orchestrator.images import ImageRef, display_path, raw_path, unreadable_id
from orchestrator.store import cellpack, schema
from orchestrator.store.labels import ImageLabels, Verdict, checked_sha256, checked_tag, checked_who
from orchestrator.store.schema import DONE_STATUSES

if TYPE_CHECKING:
    from orchestrator.compare.evaluate import LabelRow

BUSY_TIMEOUT_S = 30.0
READ_CHUNK = 256  # images per read: memory stays flat however large the store


class StoredPath(NamedTuple):
    """One stored path of an image (`ResultStore.image_rows`)."""

    path: str
    sha256: str
    size_bytes: int
    raw: bytes | None  # the name's exact bytes when it is not UTF-8
    first: str | None  # the first path of this content the same run saw (a later one is its copy)
    others: list[str]  # every other path this content was recorded at


class StoredModel(NamedTuple):
    """One model's stored entry (`ResultStore.model_rows`)."""

    name: str
    entry: dict[str, Any] | None  # the models[] entry a run stored (JSON), if any
    latest: tuple[Any, ...] | None  # else its latest cell's kind, revision, model_version, device, load_s, warmup_s


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


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


class ResultStore:
    """One store file; thread-safe (one connection behind a lock: runs write from one thread per model)."""

    def __init__(self, path: Path, create: bool = True, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path).expanduser()
        if not self.path.exists():
            if not create:
                raise StoreError(
                    f"no results store at {self.path}: `mltag analyze PATHS` creates one "
                    f"(or pass --store PATH to name another)"
                )
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the results store folder {self.path.parent}: {exc}; "
                    "pass --store PATH somewhere writable, or --no-store"
                ) from exc
        self._lock = threading.Lock()
        self._vocab_cache: dict[bytes, list[str]] = {}  # vocabulary id -> terms (cellpack.py)
        self._vocab_known: set[bytes] = set()  # vocabulary ids this store is known to hold
        self.busy_timeout_s = busy_timeout_s
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves (BEGIN IMMEDIATE for every write).
            self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
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
            return StoreError(
                f"the results store {self.path} is locked by another process (another mltag "
                "writing to it?): wait for it to finish, or pass --store OTHER_PATH or --no-store"
            )
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return StoreError(
                f"{self.path} is not a readable mltag results store ({text}): move it aside "
                "(a re-run recomputes its results), or pass --store OTHER_PATH or --no-store"
            )
        return StoreError(f"cannot use the results store {self.path}: {text}; pass --store OTHER_PATH or --no-store")

    def _version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        latest = len(schema.MIGRATIONS)  # read at call time: a test appends a version
        if self._version() == latest:
            return
        with self.writing():
            version = self._version()  # re-read under the write lock: another process may have migrated
            if version > latest:
                raise StoreError(
                    f"{self.path} was written by a newer mltag (store schema v{version}; this "
                    f"mltag {__version__} reads up to v{latest}): upgrade mltag, or pass "
                    "--store OTHER_PATH"
                )
            tables = self._db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
            if version == 0 and tables:
                raise StoreError(
                    f"{self.path} is an SQLite file but not an mltag results store (it has tables "
                    "and no mltag schema version): pass --store OTHER_PATH"
                )
            for step in schema.MIGRATIONS[version:]:
                step(self._db)
            self._db.execute(f"PRAGMA user_version = {latest}")

    @contextmanager
    def _sqlite_errors(self) -> Iterator[None]:
        """sqlite3 errors translated here, at the store's edge: nothing above the store sees sqlite3."""
        try:
            yield
        except sqlite3.Error as exc:
            raise self._explain(exc) from exc

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """One transaction, holding SQLite's write lock from the start (no deadlock on upgrade)."""
        with self._lock, self._sqlite_errors():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent snapshot while other processes write."""
        with self._lock, self._sqlite_errors():
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
        with self.writing() as db:
            db.execute(
                "INSERT INTO runs (run_id, started, status, argv, options, mltag_version) "
                "VALUES (?, ?, 'running', ?, ?, ?)",
                (run_id, started, jsontext.dumps(argv), jsontext.dumps(options), __version__),
            )

    def finish_run(self, run_id: str, finished: float, status: str = "finished") -> None:
        with self.writing() as db:
            db.execute("UPDATE runs SET finished = ?, status = ? WHERE run_id = ?", (finished, status, run_id))

    def record_images(self, run_id: str, images: Iterable[ImageRef]) -> None:
        """Every image of a run, by content, and every path it was seen at (exact bytes kept for
        names that are not valid UTF-8). A path that now reads is no longer recorded as unreadable."""
        now = time.time()
        with self.writing() as db:
            for img in images:
                path = os.path.abspath(img.path)
                text = display_path(path)
                db.execute(
                    "INSERT OR IGNORE INTO images (sha256, size_bytes, first_seen) VALUES (?, ?, ?)",
                    (img.sha256, img.size_bytes, now),
                )
                if img.error is None:
                    db.execute("DELETE FROM image_paths WHERE sha256 = ? AND path = ?", (unreadable_id(path), text))
                db.execute(
                    "INSERT INTO image_paths (sha256, path, first_seen, last_seen, last_run, raw) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sha256, path) DO UPDATE SET "
                    "last_seen = excluded.last_seen, last_run = excluded.last_run",
                    (img.sha256, text, now, now, run_id, raw_path(path)),
                )

    def known_hashes(self, stats: Iterable[tuple[bytes, os.stat_result]]) -> dict[bytes, str]:
        """The stat cache: the sha256 of each path (exact bytes) whose device, inode, size and mtime
        are those it had when it was hashed (a file whose stat is unchanged is not read again)."""
        wanted = {path: (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) for path, st in stats}
        if not wanted:
            return {}
        paths = list(wanted)
        with self.reading() as db:
            rows = db.execute(
                f"SELECT path, device, inode, size_bytes, mtime_ns, sha256 FROM file_stats WHERE path IN "
                f"({', '.join('?' * len(paths))})",
                paths,
            ).fetchall()
        return {path: sha for path, *stat, sha in rows if tuple(stat) == wanted[path]}

    def remember_hashes(self, hashed: Iterable[tuple[bytes, os.stat_result, str]]) -> None:
        """Record each path's stat beside the sha256 its content had (see known_hashes)."""
        now = time.time()
        rows = [(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, sha, now) for path, st, sha in hashed]
        if not rows:
            return
        with self.writing() as db:
            db.executemany(
                "INSERT INTO file_stats (path, device, inode, size_bytes, mtime_ns, sha256, hashed) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET device = excluded.device, "
                "inode = excluded.inode, size_bytes = excluded.size_bytes, mtime_ns = excluded.mtime_ns, "
                "sha256 = excluded.sha256, hashed = excluded.hashed",
                rows,
            )

    def put_cell(self, run_id: str, sha256: str, model: str, cell: Mapping[str, Any], meta: CellMeta) -> bool:
        """Store one cell in its own transaction; False when an earlier done cell was kept instead.
        Packed (cellpack.py) before the transaction: the lock is held for the write alone."""
        status = str(cell.get("status"))
        done = ", ".join(f"'{s}'" for s in sorted(DONE_STATUSES))
        stored, vocabularies = cellpack.pack(dict(cell))
        new = {vid: terms for vid, terms in vocabularies.items() if vid not in self._vocab_known}
        with self.writing() as db:
            for vid, terms in new.items():
                db.execute(
                    "INSERT OR IGNORE INTO vocabularies (id, model, revision, count, terms) VALUES (?, ?, ?, ?, ?)",
                    (vid, model, meta.revision, len(terms), cellpack.pack_terms(terms)),
                )
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
                (
                    sha256,
                    model,
                    meta.kind,
                    status,
                    str(cell.get("message") or ""),
                    meta.revision,
                    meta.model_version,
                    meta.env_key,
                    meta.options_key,
                    meta.device,
                    meta.load_s,
                    meta.warmup_s,
                    cell.get("inference_s"),
                    run_id,
                    time.time(),
                    stored,
                ),
            )
            changed = cur.rowcount > 0
        self._vocab_known.update(new)  # committed: never inserted again by this process
        return changed

    def put_model(self, run_id: str, model: str, entry: Mapping[str, Any]) -> None:
        """The document's models[] entry for `model` in this run (written again as the run goes on)."""
        with self.writing() as db:
            db.execute(
                "INSERT INTO run_models (run_id, model, time, entry) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (run_id, model) DO UPDATE SET time = excluded.time, entry = excluded.entry",
                (run_id, model, time.time(), jsontext.dumps(entry)),
            )

    def import_store(self, source: Path) -> int | None:
        """Merge a store an older mltag left inside an analysed folder (orchestrator/store/legacy.py)."""
        from orchestrator.store.legacy import import_store

        return import_store(self, source)

    # -- reading ------------------------------------------------------------------------------------
    def done_statuses(self, model: str, key: str, sha256s: Iterable[str]) -> dict[str, str]:
        """Status of each cell of `model` already done with this options key, by sha256, among `sha256s`
        (the cells themselves stay in the store: outputs read them when they need them)."""
        wanted = set(sha256s)
        statuses = sorted(DONE_STATUSES)
        with self.reading() as db:
            rows = db.execute(
                f"SELECT sha256, status FROM cells WHERE model = ? AND options_key = ? AND status IN "
                f"({', '.join('?' * len(statuses))})",
                (model, key, *statuses),
            ).fetchall()
        return {sha: status for sha, status in rows if sha in wanted}

    def has_done(self, model: str, key: str) -> bool:
        """Whether any cell of `model` is done with this options key (a re-run may reuse it)."""
        statuses = sorted(DONE_STATUSES)
        with self.reading() as db:
            row = db.execute(
                f"SELECT 1 FROM cells WHERE model = ? AND options_key = ? AND status IN "
                f"({', '.join('?' * len(statuses))}) LIMIT 1",
                (model, key, *statuses),
            ).fetchone()
        return row is not None

    def run_cells(self, run_id: str, model: str) -> set[str]:
        """The images (sha256) `run_id` stored a cell of `model` for."""
        with self.reading() as db:
            return {
                r[0] for r in db.execute("SELECT sha256 FROM cells WHERE run_id = ? AND model = ?", (run_id, model))
            }

    def model_entry(self, model: str) -> dict[str, Any] | None:
        """The latest stored models[] entry of `model` (None when it never ran)."""
        with self.reading() as db:
            row = db.execute(
                "SELECT entry FROM run_models WHERE model = ? ORDER BY time DESC LIMIT 1", (model,)
            ).fetchone()
        return jsontext.loads(row[0]) if row else None

    def models(self) -> list[str]:
        """The models with stored cells, in the order they were first run."""
        with self.reading() as db:
            return self._model_order(db)

    def runs(self) -> list[dict[str, Any]]:
        """Every run, oldest first, with the options it ran with."""
        with self.reading() as db:
            return sorted(self._runs(db, with_options=True), key=lambda r: r["started"])

    def cells_of(
        self, sha256s: Iterable[str], models: Iterable[str] | None = None, score_values: bool = True
    ) -> dict[str, dict[str, Any]]:
        """The stored cells of these images ({sha256: {model: cell}}), as the runners gave them
        (score_values=False: score maps as their labels only, cellpack.unpack)."""
        shas = list(dict.fromkeys(sha256s))
        names = list(models) if models is not None else None
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(shas), READ_CHUNK):
            chunk = shas[i : i + READ_CHUNK]
            sql = f"SELECT sha256, model, cell FROM cells WHERE sha256 IN ({', '.join('?' * len(chunk))})"
            args: list[Any] = list(chunk)
            if names is not None:
                sql += f" AND model IN ({', '.join('?' * len(names))})"
                args += names
            with self.reading() as db:
                rows = db.execute(sql, args).fetchall()
            for sha, model, stored in rows:  # unpacked outside the lock: other threads write meanwhile
                out.setdefault(sha, {})[model] = self._unpack(stored, score_values)
        return out

    def _unpack(self, stored: str | bytes, score_values: bool = True) -> dict[str, Any]:
        try:
            return cellpack.unpack(stored, self._vocabulary, score_values)
        except cellpack.DAMAGED as exc:
            raise StoreError(
                f"{self.path} holds a damaged cell ({type(exc).__name__}: {exc}): `mltag analyze "
                "--force` on its photo recomputes it, or move the store aside"
            ) from exc

    def _vocabulary(self, vid: bytes) -> list[str]:
        """A vocabulary's terms, read once per process (content-addressed: an id never changes meaning)."""
        terms = self._vocab_cache.get(vid)
        if terms is None:
            with self.reading() as db:
                row = db.execute("SELECT terms FROM vocabularies WHERE id = ?", (vid,)).fetchone()
            if row is None:
                raise StoreError(
                    f"{self.path} is damaged: a cell refers to a missing vocabulary ({vid.hex()}); "
                    "`mltag analyze --force` recomputes its cells"
                )
            terms = self._vocab_cache[vid] = cellpack.unpack_terms(row[0])
            self._vocab_known.add(vid)
        return terms

    def image_rows(self, under: Iterable[Path] | None = None) -> Iterator[StoredPath]:
        """The stored images, by path, one short read per chunk (memory does not grow with the store);
        store/documents.py shapes them into a document's image entries.

        under: only images with a recorded path under one of these (default: every image).
        Per image content: the paths seen by the latest run that saw it (under `under`) are listed,
        the first (`first`) as the image, the others as copies of it; `others`: every other path it
        was recorded at; `raw`: the exact bytes of a name that is not UTF-8."""
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
            with self.reading() as db:
                rows = db.execute(sql, args).fetchall()
                seen: dict[str, list[str]] = {}
                if rows:
                    shas = sorted({r[1] for r in rows})
                    for sha, path in db.execute(
                        f"SELECT sha256, path FROM image_paths WHERE sha256 IN "
                        f"({', '.join('?' * len(shas))}) ORDER BY path",
                        shas,
                    ):
                        seen.setdefault(sha, []).append(path)
            if not rows:
                return
            for path, sha, size, raw, first in rows:
                yield StoredPath(path, sha, size, raw, first, [p for p in seen.get(sha, []) if p != path])
            last = (rows[-1][0], rows[-1][1])

    def runs_used(self, models: Iterable[str], under: Iterable[Path] | None = None) -> list[dict[str, Any]]:
        """The runs whose cells of `models` (for images under `under`) are the ones stored, oldest first,
        each with `last_cell`: the time of its latest such cell."""
        names = list(models)
        under_sql, under_args = _under_clause(under, "p.path")
        with self.reading() as db:
            rows = db.execute(
                f"SELECT c.run_id, max(c.time) FROM cells c WHERE c.model IN ({', '.join('?' * len(names))}) "
                f"AND EXISTS (SELECT 1 FROM image_paths p WHERE p.sha256 = c.sha256 AND {under_sql}) "
                "GROUP BY c.run_id",
                [*names, *under_args],
            ).fetchall()
            runs = {r["run_id"]: r for r in self._runs(db)}
        used = [dict(runs[run_id], last_cell=t) for run_id, t in rows if run_id in runs]
        return sorted(used, key=lambda r: r["started"])

    def model_rows(self, models: Iterable[str], under: Iterable[Path] | None = None) -> list[StoredModel]:
        """Each model's stored models[] entry: that of the latest run that gave its shown cells; else its
        latest entry at all; else none, with what its latest cell says (store/documents.model_entries)."""
        under_sql, under_args = _under_clause(under, "p.path")
        out = []
        with self.reading() as db:
            for name in models:
                contributing = {
                    r[0]
                    for r in db.execute(
                        "SELECT DISTINCT c.run_id FROM cells c WHERE c.model = ? "
                        "AND EXISTS (SELECT 1 FROM image_paths p "
                        f"WHERE p.sha256 = c.sha256 AND {under_sql})",
                        [name, *under_args],
                    )
                }
                mine = db.execute(
                    "SELECT run_id, entry FROM run_models WHERE model = ? ORDER BY time", (name,)
                ).fetchall()
                useful = [e for e in mine if e[0] in contributing] or mine
                if useful:
                    out.append(StoredModel(name, jsontext.loads(useful[-1][1]), None))
                    continue
                latest = db.execute(
                    "SELECT kind, revision, model_version, device, load_s, warmup_s FROM cells "
                    "WHERE model = ? ORDER BY time DESC LIMIT 1",
                    (name,),
                ).fetchone()
                out.append(StoredModel(name, None, tuple(latest) if latest is not None else None))
        return out

    # -- housekeeping (`mltag store stats | vacuum`) -----------------------------------------------
    def stats(self) -> dict[str, Any]:
        """What the store holds: per model its cells and their bytes, and the file's totals."""
        with self.reading() as db:
            models = [
                {
                    "model": m,
                    "cells": n,
                    "done": d,
                    "cell_bytes": b,
                    "packed": p,
                    "vocabularies": v or 0,
                    "vocabulary_bytes": vb or 0,
                }
                for m, n, d, b, p, v, vb in db.execute(
                    "SELECT c.model, count(*), "
                    f"sum(c.status IN ({', '.join('?' * len(DONE_STATUSES))})), "
                    "sum(length(CAST(c.cell AS BLOB))), sum(typeof(c.cell) = 'blob'), "
                    "(SELECT count(*) FROM vocabularies v WHERE v.model = c.model), "
                    "(SELECT sum(length(v.terms)) FROM vocabularies v WHERE v.model = c.model) "
                    "FROM cells c GROUP BY c.model ORDER BY c.model",
                    sorted(DONE_STATUSES),
                )
            ]
            count = {
                table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 (fixed names)
                for table in ("images", "image_paths", "runs", "file_stats")
            }
            page, pages, free = (
                db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count", "freelist_count")
            )
        return {
            "path": str(self.path),
            "file_bytes": page * pages,
            "free_bytes": page * free,
            "wal_bytes": self._wal_bytes(),
            "models": models,
            **count,
        }

    def vacuum(self) -> tuple[int, int]:
        """Pack every cell still stored as JSON text (merged from an older store) and give the file's
        free pages back (SQLite VACUUM); returns the cells packed and the bytes the file shrank by."""
        before = self.path.stat().st_size + self._wal_bytes()
        packed = 0
        last = -1
        while True:
            with self.reading() as db:
                rows = db.execute(
                    "SELECT rowid, model, revision, cell FROM cells WHERE rowid > ? "
                    "AND typeof(cell) = 'text' ORDER BY rowid LIMIT ?",
                    (last, READ_CHUNK),
                ).fetchall()
            if not rows:
                break
            last = rows[-1][0]
            with self.writing() as db:
                for rowid, model, revision, text in rows:
                    stored, vocabularies = cellpack.pack(cellpack.unpack(text, self._vocabulary))
                    if isinstance(stored, str):
                        continue
                    for vid, terms in vocabularies.items():
                        db.execute(
                            "INSERT OR IGNORE INTO vocabularies (id, model, revision, count, terms) "
                            "VALUES (?, ?, ?, ?, ?)",
                            (vid, model, revision, len(terms), cellpack.pack_terms(terms)),
                        )
                    # only if unchanged meanwhile (another process may have replaced the cell)
                    packed += db.execute(
                        "UPDATE cells SET cell = ? WHERE rowid = ? AND cell = ?", (stored, rowid, text)
                    ).rowcount
        with self._lock, self._sqlite_errors():
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return packed, before - self.path.stat().st_size - self._wal_bytes()

    def _wal_bytes(self) -> int:
        wal = self.path.with_name(self.path.name + "-wal")
        return wal.stat().st_size if wal.exists() else 0

    # -- labels (the user's truth; orchestrator/store/labels.py) ----------------------------------------
    def set_label(self, sha256: str, tag: str, yes: bool, who: str) -> Verdict:
        """Record `who`'s verdict on one tag of one photo: `yes` (the tag is true of it) or not. The last
        write per tag wins; the one it replaced stays in the log."""
        sha, text, by = checked_sha256(sha256), checked_tag(tag), checked_who(who)
        with self.writing() as db:
            now = time.time()  # under the write lock: times follow the order the writes are applied
            db.execute(
                "INSERT INTO labels (sha256, tag, verdict, who, time) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (sha256, tag) DO UPDATE SET verdict = excluded.verdict, who = excluded.who, "
                "time = excluded.time",
                (sha, text, int(yes), by, now),
            )
            self._log(db, sha, text, "yes" if yes else "no", by, now)
        return Verdict(text, yes, by, now)

    def remove_label(self, sha256: str, tag: str, who: str) -> bool:
        """Undo: the tag has no verdict any more. False when it had none."""
        sha, text, by = checked_sha256(sha256), checked_tag(tag), checked_who(who)
        with self.writing() as db:
            now = time.time()  # under the write lock: times follow the order the writes are applied
            removed = db.execute("DELETE FROM labels WHERE sha256 = ? AND tag = ?", (sha, text)).rowcount > 0
            if removed:
                self._log(db, sha, text, "removed", by, now)
        return removed

    def mark_done(self, sha256: str, who: str) -> None:
        """This photo's truth set is complete: its yes tags are all its true tags (it now counts in
        `mltag eval` and `mltag labels export`). Marking it again records the new who / when."""
        sha, by = checked_sha256(sha256), checked_who(who)
        with self.writing() as db:
            now = time.time()
            db.execute(
                "INSERT INTO labels_done (sha256, who, time) VALUES (?, ?, ?) ON CONFLICT (sha256) "
                "DO UPDATE SET who = excluded.who, time = excluded.time",
                (sha, by, now),
            )
            self._log(db, sha, None, "done", by, now)

    def mark_undone(self, sha256: str, who: str) -> bool:
        """The photo is no longer done (its verdicts stay). False when it was not done."""
        sha, by = checked_sha256(sha256), checked_who(who)
        with self.writing() as db:
            now = time.time()
            undone = db.execute("DELETE FROM labels_done WHERE sha256 = ?", (sha,)).rowcount > 0
            if undone:
                self._log(db, sha, None, "undone", by, now)
        return undone

    def labels_of(self, sha256: str) -> ImageLabels:
        """One photo's verdicts (by tag, sorted) and done marker; empty when it has none."""
        sha = checked_sha256(sha256)
        with self.reading() as db:
            rows = db.execute(
                "SELECT tag, verdict, who, time FROM labels WHERE sha256 = ? ORDER BY tag", (sha,)
            ).fetchall()
            done = db.execute("SELECT who, time FROM labels_done WHERE sha256 = ?", (sha,)).fetchone()
        return ImageLabels(
            sha,
            {tag: Verdict(tag, bool(v), who, t) for tag, v, who, t in rows},
            done is not None,
            done[0] if done else None,
            done[1] if done else None,
        )

    def done_sha256s(self) -> set[str]:
        """Every photo marked done (the labelled set; a person labels thousands, not millions)."""
        with self.reading() as db:
            return {r[0] for r in db.execute("SELECT sha256 FROM labels_done")}

    def label_rows(self) -> Iterator[LabelRow]:
        """Every done photo as `mltag eval` reads a labels CSV row: keyed by sha256, its yes tags (sorted);
        a done photo without a yes tag says "nothing to tag here". Read in chunks, by sha256."""
        from orchestrator.compare.evaluate import LabelRow

        last = ""
        while True:
            with self.reading() as db:
                shas = [
                    r[0]
                    for r in db.execute(
                        f"SELECT sha256 FROM labels_done WHERE sha256 > ? ORDER BY sha256 LIMIT {READ_CHUNK}", (last,)
                    )
                ]
                tags: dict[str, list[str]] = {}
                if shas:
                    for sha, tag in db.execute(
                        f"SELECT sha256, tag FROM labels WHERE verdict = 1 AND sha256 IN "
                        f"({', '.join('?' * len(shas))}) ORDER BY sha256, tag",
                        shas,
                    ):
                        tags.setdefault(sha, []).append(tag)
            if not shas:
                return
            for sha in shas:
                yield LabelRow(sha, sha, tags.get(sha, []))
            last = shas[-1]

    def import_labels(self, truth: Mapping[str, Iterable[str]], who: str) -> int:
        """Complete truth sets (sha256 -> true tags), e.g. from a labels CSV, in one transaction: each tag
        given is yes, an earlier yes tag not given becomes no (the set is complete), earlier no verdicts
        stay, and the photo is marked done. Returns the photos imported."""
        by = checked_who(who)
        sets = {checked_sha256(sha): {checked_tag(t) for t in tags} for sha, tags in truth.items()}
        with self.writing() as db:
            now = time.time()
            for sha, tags in sets.items():
                earlier = {r[0] for r in db.execute("SELECT tag FROM labels WHERE sha256 = ? AND verdict = 1", (sha,))}
                for tag, yes in [*((t, True) for t in sorted(tags)), *((t, False) for t in sorted(earlier - tags))]:
                    db.execute(
                        "INSERT INTO labels (sha256, tag, verdict, who, time) VALUES (?, ?, ?, ?, ?) "
                        "ON CONFLICT (sha256, tag) DO UPDATE SET verdict = excluded.verdict, "
                        "who = excluded.who, time = excluded.time",
                        (sha, tag, int(yes), by, now),
                    )
                    self._log(db, sha, tag, "yes" if yes else "no", by, now)
                db.execute(
                    "INSERT INTO labels_done (sha256, who, time) VALUES (?, ?, ?) ON CONFLICT (sha256) "
                    "DO UPDATE SET who = excluded.who, time = excluded.time",
                    (sha, by, now),
                )
                self._log(db, sha, None, "done", by, now)
        return len(sets)

    def label_log(self, sha256: str) -> list[tuple[str | None, str, str, float]]:
        """Every label change of one photo in the order they were applied (rowid: writes are serialised by
        SQLite's write lock): (tag or None for the done marker, action, who, time)."""
        with self.reading() as db:
            return [
                (r[0], r[1], r[2], r[3])
                for r in db.execute(
                    "SELECT tag, action, who, time FROM label_log WHERE sha256 = ? ORDER BY rowid",
                    (checked_sha256(sha256),),
                )
            ]

    def image_at(self, path: str) -> str | None:
        """The sha256 of the image last seen at this absolute path (as the store writes paths), if any."""
        with self.reading() as db:
            row = db.execute(
                "SELECT sha256 FROM image_paths WHERE path = ? ORDER BY last_seen DESC LIMIT 1", (path,)
            ).fetchone()
        return row[0] if row else None

    def image_count(self, under: Iterable[Path] | None = None) -> int:
        """How many images (by content) the store holds under `under` (default: all), as image_rows lists them."""
        under_sql, under_args = _under_clause(under, "p.path")
        with self.reading() as db:
            return int(
                db.execute(
                    f"SELECT count(DISTINCT p.sha256) FROM image_paths p JOIN images i "
                    f"ON i.sha256 = p.sha256 WHERE {under_sql}",
                    under_args,
                ).fetchone()[0]
            )

    def unlabelled_sample(self, n: int, under: Iterable[Path] | None = None) -> list[str]:
        """The first `n` images (under `under`) not marked done, in sha256 order: a uniform sample of the archive
        that does not depend on names or reading order, and the same for the same store."""
        under_sql, under_args = _under_clause(under, "p.path")
        with self.reading() as db:
            return [
                r[0]
                for r in db.execute(
                    "SELECT DISTINCT p.sha256 FROM image_paths p JOIN images i ON i.sha256 = p.sha256 "
                    f"WHERE {under_sql} "
                    "AND p.sha256 NOT IN (SELECT sha256 FROM labels_done) ORDER BY p.sha256 LIMIT ?",
                    [*under_args, n],
                )
            ]

    def paths_of(self, sha256s: Iterable[str], under: Iterable[Path] | None = None) -> dict[str, str]:
        """A path (the first by name) of each of these images that has one under `under`; others are left out."""
        shas = list(dict.fromkeys(sha256s))
        roots = list(under) if under is not None else None
        under_sql, under_args = _under_clause(roots, "p.path")
        out: dict[str, str] = {}
        for i in range(0, len(shas), READ_CHUNK):
            chunk = shas[i : i + READ_CHUNK]
            with self.reading() as db:
                out.update(
                    db.execute(
                        f"SELECT p.sha256, min(p.path) FROM image_paths p JOIN images i ON i.sha256 = p.sha256 "
                        f"WHERE p.sha256 IN ({', '.join('?' * len(chunk))}) AND {under_sql} GROUP BY p.sha256",
                        [*chunk, *under_args],
                    ).fetchall()
                )
        return out

    @staticmethod
    def _log(db: sqlite3.Connection, sha256: str, tag: str | None, action: str, who: str, at: float) -> None:
        db.execute(
            "INSERT INTO label_log (sha256, tag, action, who, time) VALUES (?, ?, ?, ?, ?)",
            (sha256, tag, action, who, at),
        )

    @staticmethod
    def _runs(db: sqlite3.Connection, with_options: bool = False) -> list[dict[str, Any]]:
        rows = db.execute("SELECT run_id, started, finished, status, argv, mltag_version, options FROM runs").fetchall()
        return [
            {
                "run_id": r[0],
                "started": r[1],
                "finished": r[2],
                "status": r[3],
                "argv": jsontext.loads(r[4]),
                "mltag_version": r[5],
                **({"options": jsontext.loads(r[6])} if with_options else {}),
            }
            for r in rows
        ]

    @staticmethod
    def _model_order(db: sqlite3.Connection) -> list[str]:
        """Models with cells, by the time they first ran (their first models[] entry, else first cell)."""
        rows = db.execute("SELECT model, min(time) FROM cells GROUP BY model").fetchall()
        first = dict(db.execute("SELECT model, min(time) FROM run_models GROUP BY model").fetchall())
        return [m for m, t in sorted(rows, key=lambda r: (first.get(r[0], r[1]), r[0]))]


def _under_clause(under: Iterable[Path] | None, column: str) -> tuple[str, list[Any]]:
    """SQL (and its arguments) for "`column` is one of these paths or below one of them"."""
    if under is None:
        return "1", []
    roots = [display_path(os.path.abspath(Path(p).expanduser())) for p in under]
    parts: list[str] = []
    args: list[Any] = []
    for root in roots:
        prefix = root if root.endswith(os.sep) else root + os.sep
        inside = root + "!/"  # the photos inside an archive or dataset given (orchestrator/archives.py)
        parts.append(f"({column} = ? OR substr({column}, 1, ?) = ? OR substr({column}, 1, ?) = ?)")
        args += [root, len(prefix), prefix, len(inside), inside]
    return "(" + " OR ".join(parts) + ")" if parts else "0", args
