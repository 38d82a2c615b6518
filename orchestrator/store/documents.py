"""Result documents read from the results store: what one run did (`from_run`) and what the store
holds (`from_store`). The store gives rows (store/db.py); this module shapes them into the document's
types (orchestrator/document.py): image entries (`stored_images`), models[] entries (`model_entries`)
and cells. Cells are stored exactly as the runners gave them; `finish_cell` adds what documents show
on top (tags extracted from a caption, marked estimated) as they are read.

- `from_run`: what one `mltag analyze` / `mltag run` / `mltag judge` just did, its images in the
  order they were found (a duplicate file points at its first copy with `duplicate_of`);
- `from_store`: what the store holds (`mltag report`, `eval`), by path, optionally under some
  folders and for some models;
- `evaluate_store`: the models ranked on the store's own labels (`mltag eval` without --labels,
  `mltag serve`'s ranking), reading the cells of the labelled photos only;
- `queue_from_store`: what to label next (compare/nextlabel.py) among a bounded sample of the
  unlabelled photos, reading the leading models' cells only.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from orchestrator.compare.captags import finish_cell
from orchestrator.compare.evaluate import evaluate, evaluated_part
from orchestrator.compare.intervals import DEFAULT_RESAMPLES, DEFAULT_SEED
from orchestrator.compare.nextlabel import Candidate, label_queue
from orchestrator.document import Body, Cell, Header, ImageEntry, ImageRow, ModelEntry, Results, header, iso_time
from orchestrator.images import ImageRef, display_path, raw_path
from orchestrator.store.db import ResultStore, StoredModel, StoredPath

# Images whose cells are read together: one read per chunk, and no more than this many images'
# cells in memory (a WD14 cell with every raw score is ~1 MB as Python objects).
CELL_CHUNK = 16


def _image_row(row: StoredPath) -> ImageRow:
    """A stored path as a document's image: `duplicate_of` the first path of its content the same run saw,
    `seen_as` its other recorded paths, `path_bytes` (base64) the exact bytes of a name that is not UTF-8."""
    entry: ImageRow = {"path": row.path, "sha256": row.sha256, "size_bytes": row.size_bytes}
    if row.raw is not None:
        entry["path_bytes"] = base64.b64encode(row.raw).decode()
    if row.first is not None and row.path != row.first:
        entry["duplicate_of"] = row.first
    if row.others:
        entry["seen_as"] = row.others
    return entry


def stored_images(store: ResultStore, under: list[Path] | None = None) -> Iterator[ImageRow]:
    """The store's images under `under` (default: all), by path, as documents list them (db.image_rows)."""
    return map(_image_row, store.image_rows(under))


def _model_entry(row: StoredModel) -> ModelEntry:
    if row.entry is not None:  # as the run stored it (run/pipeline.py)
        return cast(ModelEntry, row.entry)
    # none was stored (cells written by hand): what the latest cell says
    kind, revision, model_version, device, load_s, warmup_s = row.latest or (None,) * 6
    return {
        "name": row.name,
        "kind": kind or "tagger",
        "adapter": "",
        "env": "",
        "hub_id": "",
        "revision": revision or "",
        "weights": None,
        "status": "ok" if row.latest else "skipped",
        "message": "no model information stored",
        "device": device,
        "dtype": None,
        "model_version": model_version,
        "load_s": load_s,
        "warmup_s": warmup_s,
        "notes": [],
    }


def model_entries(store: ResultStore, models: list[str], under: list[Path] | None = None) -> list[ModelEntry]:
    """Each model's models[] entry: that of the latest run that gave its shown cells; else its latest
    entry at all; else what its latest cell says (db.model_rows)."""
    return [_model_entry(row) for row in store.model_rows(models, under)]


def stored_cells(store: ResultStore, sha256: str, kinds: Mapping[str, str]) -> dict[str, Cell]:
    """One image's stored cells of these models (model -> kind), as documents show them (one short read)."""
    stored = store.cells_of([sha256], kinds).get(sha256, {})
    return {m: finish_cell(kinds[m], cast(Cell, c)) for m, c in stored.items()}


def _with_cells(
    entries: Iterable[ImageRow],
    store: ResultStore,
    models: list[ModelEntry],
    missing: Callable[[str, ImageRow], Cell],
    score_values: bool = True,
) -> Iterator[ImageEntry]:
    """Image entries with their `results`, read from the store a chunk of images at a time
    (score_values=False: raw score maps as their labels only, for views that never show them)."""
    kinds = {m["name"]: m.get("kind") or "tagger" for m in models}
    chunk: list[ImageRow] = []

    def flush() -> Iterator[ImageEntry]:
        cells = store.cells_of((e["sha256"] for e in chunk), kinds, score_values)
        for row in chunk:
            stored = cells.get(row["sha256"], {})
            entry = cast(ImageEntry, row)  # becomes one now: its results are added in place
            entry["results"] = {
                # a stored cell is the runner's (schemas/protocol.py): a Cell's keys
                name: finish_cell(kind, cast(Cell, stored[name])) if name in stored else missing(name, row)
                for name, kind in kinds.items()
            }
            yield entry
        chunk.clear()

    for entry in entries:
        chunk.append(entry)
        if len(chunk) >= CELL_CHUNK:
            yield from flush()
    yield from flush()


def run_images(images: list[ImageRef]) -> Iterator[ImageRow]:
    """A run's image entries in the order found; a later identical file is a duplicate_of the first."""
    first: dict[str, str] = {}
    for img in images:
        entry: ImageRow = {"path": img.name, "sha256": img.sha256, "size_bytes": img.size_bytes}
        raw = raw_path(img.path)
        if raw is not None:  # a name that is not UTF-8: its exact bytes beside the text form
            entry["path_bytes"] = base64.b64encode(raw).decode()
        if img.seen_as:  # a RAW+JPEG pair analysed from its JPEG: the RAW file(s) it stands for
            entry["seen_as"] = [display_path(p) for p in img.seen_as]
        if img.sha256 in first:
            entry["duplicate_of"] = first[img.sha256]
        else:
            first[img.sha256] = img.name
        yield entry


def from_run(head: Header, models: list[ModelEntry], images: list[ImageRef], store: ResultStore) -> Results:
    """What one run did: its images (in the order found) with the cells the store now holds."""

    def missing(name: str, entry: ImageRow) -> Cell:
        return {"status": "skipped", "message": "no result was recorded"}

    return Results(head, models, lambda: _with_cells(run_images(images), store, models, missing))


def from_store(
    store: ResultStore, under: list[Path] | None = None, models: list[str] | None = None, score_values: bool = True
) -> Results:
    """What the store holds for images under `under` (default: all) and `models` (default: every
    stored model, in the order they first ran). score_values=False: raw score maps as their labels
    only (cellpack.unpack), for a view that never shows their values (the HTML report)."""
    names = models if models is not None else store.models()
    entries = model_entries(store, names, under)
    runs = store.runs_used(names, under)
    first = min((r["started"] for r in runs), default=time.time())
    last = max((r["last_cell"] for r in runs), default=first)
    shown = [{k: v for k, v in r.items() if k != "last_cell"} for r in runs]
    options = {
        "source": "store",
        "store": str(store.path),
        "runs": [
            dict(r, started=iso_time(r["started"]), finished=iso_time(r["finished"]) if r["finished"] else None)
            for r in shown
        ],
    }
    head = header(runs[-1]["run_id"] if runs else "none", first, last, options)

    def missing(name: str, entry: ImageRow) -> Cell:
        return {
            "status": "skipped",
            "message": "no result stored for this model and image",
            "fix": f"mltag run {name} {entry['path']}",
        }

    return Results(
        head, entries, lambda: _with_cells(stored_images(store, under), store, entries, missing, score_values)
    )


def evaluate_store(
    store: ResultStore,
    normaliser: Callable[[str], str],
    under: list[Path] | None = None,
    models: list[ModelEntry] | None = None,
    cache: dict[str, dict[str, Cell]] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Every stored model ranked on the store's labels (the photos marked done, under `under` when given), with
    the bootstrap intervals: `evaluate` on the labelled photos' cells alone, so a recompute after one more
    label reads ~1,000 photos' cells, not the archive's. The same numbers as `mltag eval --labels` with the
    exported labels (a test checks it); `unlabelled` counts the store's other images under `under`.

    For a live ranking (`mltag serve`) the caller may keep, between calls, `models`: the stored models'
    entries, `model_entries(store, store.models(), under)` (two scans of the cells table, skipped), and
    `cache`: a dict in which each labelled photo's cells (the part evaluated) are read once; clear it when
    a run may have written new cells."""
    rows = list(store.label_rows())
    entries = models if models is not None else model_entries(store, store.models(), under)
    paths = store.paths_of((row.key for row in rows), under)
    if under is not None:  # a label of a photo outside `under` is not "unmatched": it is not asked for
        rows = [row for row in rows if row.key in paths]
    known = cache if cache is not None else {}

    def missing(name: str, entry: ImageRow) -> Cell:
        return {"status": "skipped", "message": "no result stored for this model and image"}

    unread: Iterator[ImageRow] = (
        {"path": paths[row.key], "sha256": row.key} for row in rows if row.key in paths and row.key not in known
    )
    for image in _with_cells(unread, store, entries, missing, score_values=False):  # evaluated_part drops raw
        known[image["sha256"]] = {m: evaluated_part(c) for m, c in image["results"].items()}
    images: list[ImageEntry] = [
        {"path": paths[row.key], "sha256": row.key, "results": known[row.key]} for row in rows if row.key in paths
    ]
    labelled: Body = {"models": entries, "images": images}
    evaluation = evaluate(labelled, rows, normaliser, resamples, seed)
    evaluation["unlabelled"] = store.image_count(under) - evaluation["labelled"]
    return evaluation


QUEUE_SAMPLE = 2000  # unlabelled photos a queue is chosen among: bounded work whatever the archive's size


def queue_from_store(
    store: ResultStore,
    normaliser: Callable[[str], str],
    leaders: list[str],
    thresholds: dict[str, float | None] | None = None,
    under: list[Path] | None = None,
    limit: int = 50,
    sample: int = QUEUE_SAMPLE,
    models: list[ModelEntry] | None = None,
) -> list[Candidate]:
    """What to label next (`label_queue`) among the first `sample` unlabelled photos in sha256 order (a
    uniform sample of the archive, the same for the same store; at 100,000 photos reading every photo's
    cells would take minutes), reading only the `leaders`' cells, a few photos at a time. `leaders` and
    `thresholds`: from the ranking (nextlabel.leading_models, best_thresholds); `models`: their entries
    when the caller has them (else read from the store)."""
    entries = models if models is not None else model_entries(store, leaders, under)
    entries = [e for e in entries if e["name"] in leaders]
    shas = store.unlabelled_sample(sample, under)
    paths = store.paths_of(shas, under)

    def missing(name: str, entry: ImageRow) -> Cell:
        return {"status": "skipped", "message": "no result stored for this model and image"}

    unlabelled: Iterator[ImageRow] = ({"path": paths[sha], "sha256": sha} for sha in shas if sha in paths)
    images = _with_cells(
        unlabelled,
        store,
        entries,
        missing,
        score_values=False,
    )  # the queue reads tags and their scores, never a raw score map
    return label_queue(images, set(), normaliser, leaders, thresholds, limit)
