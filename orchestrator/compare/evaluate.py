"""`mltag eval`: precision, recall and F1 of each model against the user's own labels.

Labels file (CSV, UTF-8; a spreadsheet's BOM is fine): one row per image,

    image,tags
    photos/hall.jpg,"rust, broken window, graffiti"
    photos/stairs.jpg,staircase,peeling paint
    3f5a...e1 (a sha256),abandoned

- First column: the image's path (relative to the CSV's folder, or absolute) or its sha256.
  A path to an existing file is matched by content hash, so moved or renamed files still match.
- The other columns: the true tags, comma-separated. Quote the list ("a, b") or give one tag per
  column; both read the same. A row with no tags says "nothing to tag here".
- An optional header row (first cell `image`, `path`, `file` or `sha256`), blank rows and rows
  starting with `#` are ignored; two rows for one image add up.

Metrics (after the comparison's normalisation and the synonym map, on both sides):
- Counted over the unique labelled images in the results; per model over those where the model
  ran (cells skipped because the model never ran are left out). A failed cell (timeout, crash,
  error, bad image) predicts nothing: it costs recall.
- Micro-averaged over images: TP, FP and FN are summed over the images, then
  precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2PR / (P + R) (0 when undefined).
  macro_f1 is the mean of the per-image F1 (an image with neither true nor predicted tags: 1).
- "own": every tag the model reported (its own threshold; a zero-shot model reports its whole
  vocabulary). "best": the score threshold, among the scores the model gave, with the highest
  micro F1 (ties: the higher threshold); a tuned figure, optimistic on a small label set.
- Models are ranked by best F1, then own F1, then name.
- Intervals: 95% percentile bootstrap over the photos, and a paired bootstrap of the leader's best-F1
  lead over the runner-up ("ahead beyond noise" when its interval is above zero): intervals.py.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from orchestrator.compare import intervals
from orchestrator.compare.cells import cell_tags, model_names, unique_images
from orchestrator.compare.intervals import DEFAULT_RESAMPLES, DEFAULT_SEED, Counts, Series
from orchestrator.document import Body, Cell
from orchestrator.errors import LabelsError
from schemas.status import SUCCESS

DEFINITIONS = {
    "metrics": (
        "micro-averaged over the labelled images: precision = TP / (TP + FP), recall = TP / (TP + FN), "
        "F1 = 2PR / (P + R) (0 when undefined); macro F1 = mean of the per-image F1"
    ),
    "own": "own threshold: every tag the model reported",
    "best": "best threshold: the score cut-off, among the scores the model gave, with the highest micro F1",
    "failures": "a failed cell (timeout, crash, error, bad image) predicts nothing; skipped cells are left out",
    "intervals": (
        "95% bootstrap intervals over the labelled photos (percentile; the best threshold is kept as "
        "chosen on all of them); the leader is ahead beyond noise when the 95% interval of its best-F1 "
        "lead over the runner-up, on the same resamples (paired), is above zero"
    ),
}
HEADER_CELLS = frozenset({"image", "path", "file", "sha256", "image_path"})
NOT_RUN = frozenset({"skipped"})
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass
class LabelRow:
    """One image's true tags: a labels CSV row, or a photo marked done in the store (ref = key = sha256)."""

    ref: str  # as written in the CSV (for messages)
    key: str  # sha256, or the resolved absolute path when no such file exists
    tags: list[str] = field(default_factory=list)


def parse_labels(
    text: str, base: Path, source: str = "labels", hasher: Callable[[Path], str] | None = None
) -> list[LabelRow]:
    """Rows of a labels CSV (see the module docstring); `base` resolves relative paths."""
    rows: list[LabelRow] = []
    for number, cells in enumerate(csv.reader(io.StringIO(text.lstrip("\ufeff"))), 1):
        cells = [c.strip() for c in cells]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if not rows and number == 1 and cells[0].casefold() in HEADER_CELLS:
            continue
        if not cells[0]:
            raise LabelsError(
                f"{source}:{number}: the first column must name the image (a path or a sha256), "
                f"got an empty cell in {','.join(cells)!r}"
            )
        tags = [t.strip() for cell in cells[1:] for t in cell.split(",") if t.strip()]
        rows.append(LabelRow(cells[0], _key(cells[0], base, hasher), tags))
    return rows


def _key(ref: str, base: Path, hasher: Callable[[Path], str] | None) -> str:
    if _SHA256.fullmatch(ref.lower()):
        return ref.lower()
    path = Path(ref).expanduser()
    path = (path if path.is_absolute() else base / path).resolve()
    if hasher is not None and path.is_file():
        return hasher(path)
    return str(path)


def write_labels(rows: Iterable[LabelRow], stream: IO[str]) -> int:
    """Rows as a labels CSV that `read_labels` reads back (header `image,tags`; the tags quoted, comma-
    separated); streamed, returns the rows written."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["image", "tags"])
    written = 0
    for row in rows:
        writer.writerow([row.ref, ", ".join(row.tags)])
        written += 1
    return written


def read_labels(path: Path) -> list[LabelRow]:
    """Parse a labels file; paths to existing files are keyed by their content hash."""
    from orchestrator.images import hash_file

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelsError(f"cannot read the labels file {path}: {exc}; it must be a UTF-8 CSV") from exc
    rows = parse_labels(text, Path(path).resolve().parent, str(path), hasher=lambda p: hash_file(p).sha256)
    if not rows:
        raise LabelsError(f"{path} has no label rows: write one row per image, e.g. 'photos/a.jpg,\"rust, door\"'")
    return rows


def evaluated_part(cell: Cell) -> Cell:
    """The part of a cell the evaluation reads (status, tags, caption): a labelled photo kept in memory
    drops its raw scores (a WD-size tagger's are ~1 MB as Python objects)."""
    part: Cell = {"status": cell["status"]}
    if "tags" in cell:
        part["tags"] = cell["tags"]
    if "caption" in cell:
        part["caption"] = cell["caption"]
    return part


@dataclass
class _Counts:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, predicted: set[str], truth: set[str]) -> None:
        hits = len(predicted & truth)
        self.tp += hits
        self.fp += len(predicted) - hits
        self.fn += len(truth) - hits


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _metrics(pairs: list[tuple[set[str], set[str]]]) -> dict[str, Any]:
    """Micro P/R/F1 (and macro F1 over images) of (predicted, true) tag sets."""
    counts = _Counts()
    per_image = []
    for predicted, truth in pairs:
        counts.add(predicted, truth)
        image = _Counts()
        image.add(predicted, truth)
        per_image.append(1.0 if not predicted and not truth else _f1(image.tp, image.fp, image.fn))
    tp, fp, fn = counts.tp, counts.fp, counts.fn
    return {
        "precision": round(tp / (tp + fp), 6) if tp + fp else 0.0,
        "recall": round(tp / (tp + fn), 6) if tp + fn else 0.0,
        "f1": round(_f1(tp, fp, fn), 6),
        "macro_f1": round(sum(per_image) / len(per_image), 6) if per_image else 0.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "predicted": tp + fp,
    }


def best_threshold(scored: list[tuple[dict[str, float], set[str]]]) -> float | None:
    """The threshold (one of the scores given) that maximises micro F1; ties go to the higher one.

    `scored`: per image, (predicted tag -> score, true tags). One sorted sweep: lowering the threshold
    past a score adds that prediction, a TP if it is a true tag, else an FP.
    """
    truths = sum(len(truth) for _, truth in scored)
    events = sorted(((s, tag in truth) for tags, truth in scored for tag, s in tags.items()), key=lambda e: -e[0])
    best: tuple[float, float] | None = None  # (f1, threshold)
    tp = fp = 0
    for i, (score, hit) in enumerate(events):
        tp, fp = tp + hit, fp + (not hit)
        if i + 1 < len(events) and events[i + 1][0] == score:
            continue  # every prediction at this score goes in together
        f1 = _f1(tp, fp, truths - tp)
        if best is None or f1 > best[0]:
            best = (f1, score)
    return None if best is None else best[1]


def match_labels(document: Body, rows: list[LabelRow]) -> tuple[dict[str, set[str]], list[str], int]:
    """(sha256 -> raw true tags, label refs not in the results, unique images without labels)."""
    images = unique_images(document)
    by_path = {str(Path(img["path"]).expanduser().resolve()): img["sha256"] for img in document.get("images", [])}
    known = {img["sha256"] for img in images}
    labels: dict[str, set[str]] = {}
    missing: list[str] = []
    for row in rows:
        sha = row.key if row.key in known else by_path.get(row.key)
        if sha is None:
            missing.append(row.ref)
        else:
            labels.setdefault(sha, set()).update(row.tags)
    return labels, missing, sum(1 for img in images if img["sha256"] not in labels)


def evaluate(
    document: Body,
    labels: dict[str, set[str]] | list[LabelRow],
    normaliser: Callable[[str], str],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Per-model precision / recall / F1 against `labels` (sha256 -> true tags, or parsed rows), ranked, with
    95% bootstrap intervals over the photos (`resamples` seeded by `seed`; 0: none) and whether the leader's
    best F1 is ahead of the runner-up's beyond noise (orchestrator/compare/intervals.py). `mltag eval` and
    `mltag serve` both call this, so they show the same numbers."""
    rows = labels if isinstance(labels, list) else [LabelRow(k, k, sorted(v)) for k, v in labels.items()]
    by_sha, missing, unlabelled = match_labels(document, rows)
    truth = {sha: {n for t in tags if (n := normaliser(t))} for sha, tags in by_sha.items()}
    images = [img for img in unique_images(document) if img["sha256"] in truth]
    kinds = {m["name"]: m.get("kind") for m in document.get("models", [])}
    results = []
    counts: dict[str, tuple[dict[str, Counts], dict[str, Counts]]] = {}  # model -> (own, best) by sha256
    for model in model_names(document):
        scored: list[tuple[dict[str, float], set[str]]] = []
        shas: list[str] = []
        failed = 0
        for img in images:
            cell = img.get("results", {}).get(model)
            if not cell or cell.get("status") in NOT_RUN:
                continue
            failed += cell.get("status") not in SUCCESS
            scored.append(({t: s for t, (s, _) in cell_tags(cell, normaliser, None).items()}, truth[img["sha256"]]))
            shas.append(img["sha256"])
        result, own, best = _model_result(model, kinds.get(model), scored, failed)
        results.append(result)
        if result["own"] is not None:
            counts[model] = (dict(zip(shas, own, strict=True)), dict(zip(shas, best, strict=True)))
    results.sort(
        key=lambda r: (r["best"] is None, -(r["best"] or {}).get("f1", 0), -(r["own"] or {}).get("f1", 0), r["model"])
    )
    evaluation = {
        "definitions": DEFINITIONS,
        "labelled": len(images),
        "unlabelled": unlabelled,
        "unmatched_labels": missing,
        "true_tags": sum(len(t) for t in truth.values()),
        "models": results,
    }
    if resamples > 0:
        _add_intervals(evaluation, counts, sorted(img["sha256"] for img in images), resamples, seed)
    return evaluation


def _add_intervals(
    evaluation: dict[str, Any],
    counts: dict[str, tuple[dict[str, Counts], dict[str, Counts]]],
    order: list[str],
    resamples: int,
    seed: int,
) -> None:
    """Each ranked model's `intervals`, the `bootstrap` settings and the `leader` verdict, in place."""
    series = [
        Series(model, threshold, intervals.per_photo_counts(by_sha, order))
        for model, pair in counts.items()
        for threshold, by_sha in zip(("own", "best"), pair, strict=True)
    ]
    ranked = [r["model"] for r in evaluation["models"] if r["model"] in counts]
    pair = (ranked[0], ranked[1]) if len(ranked) > 1 else None
    boot = intervals.bootstrap(series, pair, resamples, seed)
    for result in evaluation["models"]:
        result["intervals"] = boot["intervals"].get(result["model"])
    evaluation["bootstrap"] = {
        "resamples": resamples,
        "seed": seed,
        "confidence": intervals.CONFIDENCE,
        "unit": "photo",
    }
    evaluation["leader"] = None
    if pair is not None and boot["difference"] is not None:
        first, second = (next(r for r in evaluation["models"] if r["model"] == m) for m in pair)
        evaluation["leader"] = {
            "model": pair[0],
            "runner_up": pair[1],
            "metric": "best f1",
            "difference": round(first["best"]["f1"] - second["best"]["f1"], 6),
            **boot["difference"],
        }


def _model_result(
    model: str, kind: str | None, scored: list[tuple[dict[str, float], set[str]]], failed: int
) -> tuple[dict[str, Any], list[Counts], list[Counts]]:
    """The model's metrics, and its per-photo (TP, FP, FN) at its own and at its best threshold."""
    out: dict[str, Any] = {
        "model": model,
        "kind": kind,
        "images": len(scored),
        "failed": failed,
        "own": None,
        "best": None,
    }
    if not scored:
        out["note"] = "no result on a labelled image (the model did not run)"
        return out, [], []
    pairs = [(set(tags), truth) for tags, truth in scored]
    out["own"] = _metrics(pairs)
    threshold = best_threshold(scored)
    if threshold is None:  # the model predicted nothing at all
        out["best"] = {**out["own"], "threshold": None}
        at = pairs
    else:
        at = [({t for t, s in tags.items() if s >= threshold}, truth) for tags, truth in scored]
        out["best"] = {**_metrics(at), "threshold": round(threshold, 6)}
    return out, [_photo_counts(p, t) for p, t in pairs], [_photo_counts(p, t) for p, t in at]


def _photo_counts(predicted: set[str], truth: set[str]) -> Counts:
    hits = len(predicted & truth)
    return hits, len(predicted) - hits, len(truth) - hits
