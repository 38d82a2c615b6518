"""The browse index: what the grid filters and sorts on, derived from the results store.

The store keeps each cell as JSON (orchestrator/store/db.py): right for reading one photo, no good for
"every photo where a model gave `rust`" over 100,000 photos. This index holds, per unique image, its
path, folder, agreement and consensus (the comparison's own figures), and the union of the models'
top tags (normalised) with which models gave each; every filter is an indexed SQL query, every page
a keyset query (LIMIT), so a page costs the same at photo 10 and at photo 100,000.

It is a cache: an SQLite file in the user's cache folder (never in the archive, never in the store),
rebuilt when the store's cells or paths change (a fingerprint), streamed in chunks so memory does not
grow with the store. Deleting it costs one rebuild.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import jsontext
from orchestrator.compare import Comparison
from orchestrator.document import ImageComparison, ImageEntry
from orchestrator.errors import StoreError
from orchestrator.paths import browse_dir
from orchestrator.store import ResultStore
from orchestrator.store.documents import from_store

INDEX_VERSION = 2  # bump when the tables or what they hold change: the index is rebuilt
WRITE_CHUNK = 512  # images per write transaction while building
TOP_K = 10  # per model, as the comparison's default: the tags a photo is found by
SUMMARY_TAGS = 4  # consensus tags shown under a grid thumbnail
PAGE_MAX = 200
SORTS = {  # name -> (SQL key that is never NULL, descending?)
    "path": ("i.path", False),
    "disagreement": ("coalesce(i.agreement, 2.0)", False),  # the photos where the models disagree most first
    "agreement": ("coalesce(i.agreement, -1.0)", True),
    "consensus": ("coalesce(i.consensus, -1.0)", True),  # the strongest shared tag first
}
STATUS_FILTERS = ("ok", "no_tags", "failed", "missing")
FAILED = ("timeout", "crashed", "error", "bad_image")

_TABLES = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE models (idx INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    """CREATE TABLE images (id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, path TEXT NOT NULL, raw BLOB,
        folder TEXT NOT NULL, agreement REAL, consensus REAL, n_ok INTEGER NOT NULL, summary TEXT NOT NULL)""",
    "CREATE INDEX images_by_path ON images(path, id)",
    "CREATE INDEX images_by_folder ON images(folder, path, id)",
    "CREATE INDEX images_by_agreement ON images(coalesce(agreement, 2.0), id)",
    "CREATE INDEX images_by_agreement_desc ON images(coalesce(agreement, -1.0), id)",  # read backwards
    "CREATE INDEX images_by_consensus ON images(coalesce(consensus, -1.0), id)",
    "CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, images INTEGER NOT NULL DEFAULT 0)",
    """CREATE TABLE image_tags (tag INTEGER NOT NULL, image INTEGER NOT NULL, models INTEGER NOT NULL,
        n_models INTEGER NOT NULL, score REAL NOT NULL, PRIMARY KEY (tag, image)) WITHOUT ROWID""",
    """CREATE TABLE image_status (model INTEGER NOT NULL, status TEXT NOT NULL, image INTEGER NOT NULL,
        PRIMARY KEY (model, status, image)) WITHOUT ROWID""",
    "CREATE INDEX image_status_by_status ON image_status(status, image)",
    "CREATE TABLE folders (folder TEXT PRIMARY KEY, images INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE labelled (sha256 TEXT PRIMARY KEY, done INTEGER NOT NULL) WITHOUT ROWID",
)


@dataclass(frozen=True)
class Filters:
    """A grid query: every field optional; they combine with AND."""

    tag: str | None = None
    model: str | None = None
    status: str | None = None  # ok | no_tags | failed | missing (of `model`, else of any model)
    labelled: str | None = None  # labelled | done | unlabelled | not-done
    folder: str | None = None  # this folder and those below it
    sort: str = "path"


def source_path(path: str, raw: bytes | None) -> Path:
    """The file itself: the exact bytes of a name that is not valid UTF-8."""
    return Path(os.fsdecode(raw)) if raw is not None else Path(path)


class BrowseIndex:
    """The index of one store (and one set of PATHS); thread-safe behind a lock like the store."""

    def __init__(
        self, store: ResultStore, under: list[Path] | None, normalise: Callable[[str], str], folder: Path | None = None
    ) -> None:
        self.store, self.under, self.normalise = store, under, normalise
        scope = str(store.path.resolve()) + "\0" + "\0".join(sorted(os.path.abspath(p) for p in under or []))
        name = f"index-{hashlib.sha256(scope.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}.sqlite"
        self.path = (folder or browse_dir()) / name
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self.models: list[str] = []

    # -- building -----------------------------------------------------------------------------------
    def _fingerprint(self) -> str:
        """Changes whenever a cell or a path is written (the store only ever adds or replaces rows)."""
        with self.store.reading() as db:
            cells = db.execute("SELECT count(*), max(time) FROM cells").fetchone()
            paths = db.execute("SELECT count(*), max(last_seen) FROM image_paths").fetchone()
        return jsontext.dumps([INDEX_VERSION, list(cells), list(paths)])

    def open(self, progress: Callable[[int], None] | None = None) -> bool:
        """Open the index, building it first when the store changed; True when it was (re)built."""
        fingerprint = self._fingerprint()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            row = None
            try:
                row = db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
            except sqlite3.Error:
                pass
            if row is not None and row[0] == fingerprint:
                self._db = db
                self.models = [r[0] for r in db.execute("SELECT name FROM models ORDER BY idx")]
                return False
            db.close()
            tmp = self.path.with_suffix(".building")
            tmp.unlink(missing_ok=True)
            self._build(tmp, fingerprint, progress)
            os.replace(tmp, self.path)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot write the browse index {self.path}: {exc}; set MLTAG_CACHE to a writable folder"
            ) from exc
        except OSError as exc:
            raise StoreError(
                f"cannot write the browse index in {self.path.parent}: {exc}; set MLTAG_CACHE to a writable folder"
            ) from exc
        return True

    def _build(self, target: Path, fingerprint: str, progress: Callable[[int], None] | None) -> None:
        db = sqlite3.connect(target, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            for statement in _TABLES:
                db.execute(statement)
            results = from_store(self.store, self.under)
            self.models = [m["name"] for m in results.models]
            bits = {m: 1 << i for i, m in enumerate(self.models)}
            db.executemany("INSERT INTO models (idx, name) VALUES (?, ?)", list(enumerate(self.models)))
            comparer = Comparison(results.models, TOP_K, None, self.normalise)
            tag_ids: dict[str, int] = {}
            done = 0
            db.execute("BEGIN")
            for image in results.images():
                entry = comparer.add(image)
                if entry is None:  # a duplicate: the grid shows one tile per content
                    continue
                self._add(db, image, entry, bits, tag_ids)
                done += 1
                if done % WRITE_CHUNK == 0:
                    db.execute("COMMIT")
                    db.execute("BEGIN")
                    if progress:
                        progress(done)
            db.execute("UPDATE tags SET images = (SELECT count(*) FROM image_tags t WHERE t.tag = tags.id)")
            db.execute("INSERT INTO folders SELECT folder, count(*) FROM images GROUP BY folder")
            db.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (fingerprint,))
            db.execute("COMMIT")
            db.execute("ANALYZE")
        finally:
            db.close()

    def _add(
        self,
        db: sqlite3.Connection,
        image: ImageEntry,
        entry: ImageComparison,
        bits: dict[str, int],
        tag_ids: dict[str, int],
    ) -> None:
        results = image.get("results") or {}
        raw = base64.b64decode(image["path_bytes"]) if image.get("path_bytes") else None
        consensus = entry.get("consensus") or []
        statuses = {m: str(c.get("status", "missing")) if (c := results.get(m)) else "missing" for m in self.models}
        summary = {
            "tags": [c["tag"] for c in consensus[:SUMMARY_TAGS]],
            "statuses": {m: s for m, s in statuses.items() if s != "ok"},
        }
        cur = db.execute(
            "INSERT INTO images (sha256, path, raw, folder, agreement, consensus, n_ok, summary) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                image["sha256"],
                image["path"],
                raw,
                os.path.dirname(image["path"]),
                entry.get("agreement"),
                consensus[0]["score"] if consensus else None,
                sum(s == "ok" for s in statuses.values()),
                jsontext.dumps(summary),
            ),
        )
        image_id = cur.lastrowid
        rows = []
        for item in consensus:
            tag = item["tag"]
            if tag not in tag_ids:
                tag_ids[tag] = len(tag_ids) + 1
                db.execute("INSERT INTO tags (id, name) VALUES (?, ?)", (tag_ids[tag], tag))
            mask = sum(bits[m] for m in item["models"] if m in bits)
            rows.append((tag_ids[tag], image_id, mask, item["n_models"], item["score"]))
        db.executemany("INSERT INTO image_tags VALUES (?, ?, ?, ?, ?)", rows)
        db.executemany(
            "INSERT INTO image_status VALUES (?, ?, ?)",
            [(i, _status_group(statuses[m]), image_id) for i, m in enumerate(self.models)],
        )

    # -- reading ------------------------------------------------------------------------------------
    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        if self._db is None:
            raise RuntimeError("BrowseIndex.open() first")
        with self._lock:
            yield self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _where(self, db: sqlite3.Connection, f: Filters, count: bool = False) -> tuple[list[str], list[Any]] | None:
        """SQL conditions on `images i` for the filters; None when they can match nothing. `count`: the
        form that counts fastest (a set built once, IN) rather than the one that pages fastest (EXISTS per
        image, stopping at the page's end)."""
        where: list[str] = []
        args: list[Any] = []
        model = self.models.index(f.model) if f.model in self.models else None
        if f.model is not None and model is None:
            return None
        if f.tag:
            row = db.execute("SELECT id FROM tags WHERE name = ?", (self.normalise(f.tag) or f.tag,)).fetchone()
            if row is None:
                return None
            if model is not None:
                where.append(_exists("image_tags t", "t.tag = ? AND t.models & ? != 0", "t.image", count))
                args += [row[0], 1 << model]
            else:
                where.append(_exists("image_tags t", "t.tag = ?", "t.image", count))
                args.append(row[0])
        if f.status:
            if f.status not in STATUS_FILTERS:
                return None
            if model is not None:
                where.append(_exists("image_status s", "s.model = ? AND s.status = ?", "s.image", count))
                args += [model, f.status]
            else:
                where.append(_exists("image_status s", "s.status = ?", "s.image", count))
                args.append(f.status)
        elif model is not None and not f.tag:  # a model alone: the photos it gave a result for
            where.append(_exists("image_status s", "s.model = ? AND s.status = 'ok'", "s.image", count))
            args.append(model)
        if f.labelled == "labelled":
            where.append("i.sha256 IN (SELECT sha256 FROM labelled)")
        elif f.labelled == "done":
            where.append("i.sha256 IN (SELECT sha256 FROM labelled WHERE done)")
        elif f.labelled == "unlabelled":
            where.append("i.sha256 NOT IN (SELECT sha256 FROM labelled)")
        elif f.labelled == "not-done":
            where.append("i.sha256 NOT IN (SELECT sha256 FROM labelled WHERE done)")
        if f.folder:
            folder = f.folder.rstrip("/\\") or f.folder
            prefix = folder + os.sep
            where.append("(i.folder = ? OR substr(i.folder, 1, ?) = ?)")
            args += [folder, len(prefix), prefix]
        return where, args

    def page(self, f: Filters, cursor: str | None = None, limit: int = 60, count: bool = True) -> dict[str, Any]:
        """One page of the grid after `cursor` (opaque: from the previous page's `next`). `total` is
        counted for the first page only (the browser keeps it while it pages)."""
        key, desc = SORTS.get(f.sort, SORTS["path"])
        limit = max(1, min(PAGE_MAX, limit))
        with self._reading() as db:
            built = self._where(db, f)
            if built is None:
                return {"items": [], "next": None, "total": 0, "models": self.models}
            where, args = built
            if cursor:
                value, last_id = _parse_cursor(cursor)
                # a row value: SQLite seeks the sort's index to it (an OR of two comparisons would scan)
                where = [*where, f"({key}, i.id) {'<' if desc else '>'} (?, ?)"]
                args = [*args, value, last_id]
            order = "DESC" if desc else ""
            sql = (
                f"SELECT i.id, i.sha256, i.path, i.agreement, i.consensus, i.n_ok, i.summary, {key}, "
                "(SELECT done FROM labelled l WHERE l.sha256 = i.sha256) FROM images i "
                f"WHERE {' AND '.join(where) or '1'} ORDER BY {key} {order}, i.id {order} LIMIT {limit + 1}"
            )
            rows = db.execute(sql, args).fetchall()
            total = self._count(db, f) if count and not cursor else None
        more = len(rows) > limit
        rows = rows[:limit]
        items = [
            {
                "sha256": sha,
                "path": path,
                "name": os.path.basename(path),
                "agreement": agreement,
                "consensus": consensus,
                "n_ok": n_ok,
                "labelled": None if done is None else bool(done),
                **jsontext.loads(summary),
            }
            for _, sha, path, agreement, consensus, n_ok, summary, _, done in rows
        ]
        nxt = _cursor(rows[-1][7], rows[-1][0]) if more and rows else None
        return {"items": items, "next": nxt, "total": total, "models": self.models}

    def _count(self, db: sqlite3.Connection, f: Filters) -> int:
        if not (f.model or f.status or f.labelled or f.folder):  # no filter, or a tag alone: counted already
            if not f.tag:
                return int(db.execute("SELECT count(*) FROM images").fetchone()[0])
            row = db.execute("SELECT images FROM tags WHERE name = ?", (self.normalise(f.tag) or f.tag,)).fetchone()
            return int(row[0]) if row else 0
        built = self._where(db, f, count=True)
        if built is None:
            return 0
        where, args = built
        return int(db.execute(f"SELECT count(*) FROM images i WHERE {' AND '.join(where)}", args).fetchone()[0])

    def neighbours(self, sha256: str, f: Filters) -> dict[str, str | None]:
        """The photos before and after `sha256` in the grid's order (keyboard next / previous)."""
        key, desc = SORTS.get(f.sort, SORTS["path"])
        with self._reading() as db:
            built = self._where(db, f)
            row = db.execute(f"SELECT {key}, i.id FROM images i WHERE i.sha256 = ?", (sha256,)).fetchone()
            if built is None or row is None:
                return {"previous": None, "next": None}
            where, args = built
            out: dict[str, str | None] = {}
            for name, after in (("next", True), ("previous", False)):
                forward = after != desc  # the direction of the index scan
                cond = f"({key}, i.id) {'>' if forward else '<'} (?, ?)"
                order = "" if forward else "DESC"
                hit = db.execute(
                    f"SELECT i.sha256 FROM images i WHERE {' AND '.join([*where, cond])} "
                    f"ORDER BY {key} {order}, i.id {order} LIMIT 1",
                    [*args, row[0], row[1]],
                ).fetchone()
                out[name] = hit[0] if hit else None
        return out

    def tags(self, prefix: str = "", limit: int = 20) -> list[dict[str, Any]]:
        """Tags (normalised) starting with `prefix`, the most frequent first, with their photo counts."""
        text = " ".join(prefix.lower().replace("_", " ").split())
        with self._reading() as db:
            if text:
                rows = db.execute(
                    "SELECT name, images FROM tags WHERE substr(name, 1, ?) = ? ORDER BY images DESC, name LIMIT ?",
                    (len(text), text, limit),
                ).fetchall()
                if len(rows) < limit:  # then the tags containing it
                    rows += db.execute(
                        "SELECT name, images FROM tags WHERE instr(name, ?) > 1 ORDER BY images DESC, name LIMIT ?",
                        (text, limit - len(rows)),
                    ).fetchall()
            else:
                rows = db.execute(
                    "SELECT name, images FROM tags ORDER BY images DESC, name LIMIT ?", (limit,)
                ).fetchall()
        return [{"tag": name, "images": n} for name, n in rows]

    def folders(self, limit: int = 500) -> list[dict[str, Any]]:
        with self._reading() as db:
            rows = db.execute("SELECT folder, images FROM folders ORDER BY folder LIMIT ?", (limit,)).fetchall()
        return [{"folder": f, "images": n} for f, n in rows]

    def image(self, sha256: str) -> dict[str, Any] | None:
        """An image of the index: its stored path (and exact bytes), never a path from a request."""
        with self._reading() as db:
            row = db.execute("SELECT path, raw, summary FROM images WHERE sha256 = ?", (sha256,)).fetchone()
        if row is None:
            return None
        return {"sha256": sha256, "path": row[0], "source": source_path(row[0], row[1]), **jsontext.loads(row[2])}

    def set_labelled(self, rows: list[tuple[str, bool]], replace: bool = False) -> None:
        """The labelled photos (sha256, done), as the store holds them."""
        with self._reading() as db:
            db.execute("BEGIN")
            if replace:
                db.execute("DELETE FROM labelled")
            db.executemany(
                "INSERT INTO labelled VALUES (?, ?) ON CONFLICT (sha256) DO UPDATE SET done = excluded.done",
                [(sha, int(done)) for sha, done in rows],
            )
            db.execute("COMMIT")

    def sync_labelled(self) -> None:
        """The labelled photos as the store holds them now (at start: another process may have labelled)."""
        with self.store.reading() as db:
            rows = db.execute(
                "SELECT s.sha256, EXISTS (SELECT 1 FROM labels_done d WHERE d.sha256 = s.sha256) FROM "
                "(SELECT sha256 FROM labels UNION SELECT sha256 FROM labels_done) s"
            ).fetchall()
        self.set_labelled([(sha, bool(done)) for sha, done in rows], replace=True)

    def done_among(self, sha256s: list[str]) -> set[str]:
        """Which of these photos are marked done."""
        with self._reading() as db:
            return (
                {
                    r[0]
                    for r in db.execute(
                        f"SELECT sha256 FROM labelled WHERE done AND sha256 IN ({', '.join('?' * len(sha256s))})",
                        sha256s,
                    )
                }
                if sha256s
                else set()
            )

    def unset_labelled(self, sha256: str) -> None:
        with self._reading() as db:
            db.execute("DELETE FROM labelled WHERE sha256 = ?", (sha256,))

    def count(self) -> int:
        with self._reading() as db:
            return int(db.execute("SELECT count(*) FROM images").fetchone()[0])


def _exists(table: str, condition: str, column: str, count: bool) -> str:
    alias = table.split()[-1]
    if count:
        return f"i.id IN (SELECT {column} FROM {table} WHERE {condition})"
    return f"EXISTS (SELECT 1 FROM {table} WHERE {condition} AND {alias}.{column.split('.')[-1]} = i.id)"


def _status_group(status: str) -> str:
    return "failed" if status in FAILED else status if status in STATUS_FILTERS else "missing"


def _cursor(value: Any, image_id: int) -> str:
    return jsontext.dumps([value, image_id])


def _parse_cursor(cursor: str) -> tuple[Any, int]:
    try:
        value, image_id = jsontext.loads(cursor)
        if not isinstance(value, str | int | float) or not isinstance(image_id, int):
            raise ValueError(cursor)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"bad cursor {cursor!r}") from exc
    return value, image_id
