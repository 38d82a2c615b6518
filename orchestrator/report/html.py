"""The HTML report: one self-contained file (no network at all) to look at rather than read.

Per image: a thumbnail and the models side by side (tags with score bars, captions, status,
timing). Folder level: the agreement matrix as a heat map, consensus tags, the model x model
agreement, the timing chart and the status counts. Filters (model, status, tag search) are a few
lines of vanilla JS.

Model output is untrusted text (a VLM can write `<script>`): Jinja2 autoescapes every value, the
data the script needs is JSON with `<`, `>`, `&` escaped (Jinja's `tojson`), and a
Content-Security-Policy allows only this file's own script (by hash) and data: images, so the
page can neither run injected code nor reach the network.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import IO, Any

from jinja2 import ChainableUndefined, Environment, PackageLoader
from markupsafe import Markup

from orchestrator.compare import Comparison
from orchestrator.compare.normalise import Normaliser
from orchestrator.document import Results
from orchestrator.report.summary import Views
from orchestrator.report.thumbnails import thumbnail

TAGS_LISTED = 60           # per cell: the top N shown, the rest up to this many behind "more"
CONSENSUS_PER_IMAGE = 8
STATUS_ORDER = ("ok", "no_tags", "timeout", "crashed", "error", "bad_image", "skipped", "missing")
THUMBNAILS_AHEAD = 16     # thumbnails made ahead of the page being written
TIMING_METRICS = (("load_s", "load"), ("warmup_s", "warm-up"), ("mean_s", "mean inference"))


@cache
def _env() -> Environment:
    # ChainableUndefined: a document read back from an older store may lack optional keys; render
    # them as blanks rather than fail the whole report.
    env = Environment(loader=PackageLoader("orchestrator.report", "templates"), autoescape=True,
                      undefined=ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["secs"] = _secs
    env.filters["num"] = _num
    return env


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _num(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if _is_number(value) else "–"


def _secs(value: Any) -> str:
    if not _is_number(value):
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _key(text: str) -> str:
    """What the tag search compares: lower case, `_` as a space (the JS does the same to the query)."""
    return " ".join(text.lower().replace("_", " ").split())


def _tag_view(tag: dict[str, Any], norm: Callable[[str], str]) -> dict[str, Any]:
    score = float(tag.get("score", 0.0))
    name = str(tag.get("name", ""))
    return {"name": name, "score": score, "pct": round(max(0.0, min(1.0, score)) * 100, 1),
            "estimated": bool(tag.get("estimated")), "category": tag.get("category") or "",
            "key": _key(name), "norm": _key(norm(name)), "show_category": False}


def _cell_view(model: str, result: dict[str, Any] | None, threshold: float | None, top: int,
               norm: Callable[[str], str]) -> dict[str, Any]:
    if result is None:
        result = {"status": "missing", "message": "no result for this model"}
    tags = sorted(result.get("tags") or [], key=lambda t: -float(t.get("score", 0.0)))
    if threshold is not None:
        tags = [t for t in tags if float(t.get("score", 0.0)) >= threshold]
    listed = [_tag_view(t, norm) for t in tags[:TAGS_LISTED]]
    if len({t["category"] for t in listed}) > 1:  # e.g. WD14's rating / character beside general tags
        for t in listed:
            t["show_category"] = True
    shown = top if top > 0 else len(listed)
    return {"model": model, "status": result.get("status", "missing"), "message": result.get("message") or "",
            "fix": result.get("fix") or "", "caption": result.get("caption") or "",
            "inference_s": result.get("inference_s"), "attempts": len(result.get("attempts") or []),
            "tags": listed[:shown], "more": listed[shown:], "unlisted": max(0, len(tags) - TAGS_LISTED)}


def _facts(results: dict[str, Any]) -> str:
    for result in results.values():
        info = (result or {}).get("image") or {}
        if info.get("width"):
            parts = [f"{info['width']}×{info['height']}", info.get("format") or "", info.get("mode") or ""]
            if info.get("exif_orientation") not in (None, 1):
                parts.append(f"EXIF orientation {info['exif_orientation']}")
            return " ".join(p for p in parts if p)
    return ""


def _resolve(path: str, image_root: Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or image_root is None else image_root / p


def _source_path(image: dict[str, Any], image_root: Path | None) -> Path:
    """The file to make the thumbnail from: the exact bytes of a name that is not UTF-8."""
    if image.get("path_bytes"):
        return Path(os.fsdecode(base64.b64decode(image["path_bytes"])))
    return _resolve(image["path"], image_root)


def _thumbnails(images: Iterator[dict[str, Any]], image_root: Path | None,
                thumb_size: int) -> Iterator[tuple[dict[str, Any], tuple[str | None, str | None]]]:
    """Each image with its thumbnail, made a few images ahead on threads (Pillow decodes outside the
    GIL); never more than AHEAD in flight, so memory does not grow with the folder."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        window: deque[tuple[dict[str, Any], Future[tuple[str | None, str | None]]]] = deque()
        for image in images:
            window.append((image, pool.submit(thumbnail, _source_path(image, image_root), thumb_size)))
            if len(window) >= THUMBNAILS_AHEAD:
                first, done = window.popleft()
                yield first, done.result()
        while window:
            first, done = window.popleft()
            yield first, done.result()


def _image_views(results: Results, per_image: IO[str], models: list[str], image_root: Path | None,
                 thumb_size: int, norm: Callable[[str], str], threshold: float | None,
                 top: int) -> Iterator[dict[str, Any]]:
    """One view per image, in order; `per_image`: the comparison's entry of each image, a JSON line
    each (null for a duplicate), written by the first pass."""
    judges = {m["name"] for m in results.models if m.get("kind") == "judge"}
    per_image.seek(0)
    for index, (image, (thumb, thumb_error)) in enumerate(_thumbnails(results.images(), image_root, thumb_size)):
        results_ = image.get("results") or {}
        compared = json.loads(per_image.readline() or "null") or {}
        yield {
            "id": f"img-{index}", "path": image["path"], "sha256": image["sha256"],
            "size_bytes": image.get("size_bytes"), "duplicate_of": image.get("duplicate_of"), "thumb": thumb,
            "thumb_error": thumb_error, "facts": _facts(results_), "agreement": compared.get("agreement"),
            "consensus": (compared.get("consensus") or [])[:CONSENSUS_PER_IMAGE],
            "cells": [dict(_cell_view(m, results_.get(m), threshold, top, norm), synthesis=m in judges)
                      for m in models]}


def _timing_chart(timing: dict[str, dict[str, Any]], models: list[str]) -> dict[str, Any]:
    """Geometry of the inline SVG: one panel per metric, each scaled to its own maximum (load
    takes seconds, inference milliseconds: one axis would flatten the latter to nothing)."""
    label_w, bar_w, value_w, row_h, head_h = 150, 320, 80, 18, 22
    panels, y = [], 0
    for key, title in TIMING_METRICS:
        values = {m: (timing.get(m) or {}).get(key) for m in models}
        top = max((v for v in values.values() if v), default=0.0)
        rows = []
        for i, m in enumerate(models):
            v = values[m]
            rows.append({"model": m, "value": v, "y": y + head_h + i * row_h,
                         "w": round(bar_w * v / top, 1) if v and top else 0})
        panels.append({"title": title, "key": key, "y": y, "rows": rows})
        y += head_h + len(models) * row_h + 10
    return {"panels": panels, "height": y, "width": label_w + bar_w + value_w, "label_w": label_w,
            "bar_w": bar_w, "row_h": row_h}


def _heat_rows(folder: dict[str, Any], models: list[str], n_images: int) -> list[dict[str, Any]]:
    rows = []
    for row in folder.get("matrix") or []:
        cells = []
        for m in models:
            entry = (row.get("models") or {}).get(m) or {}
            count = int(entry.get("images", 0) or 0)
            cells.append({"model": m, "images": count, "mean_score": entry.get("mean_score"),
                          "estimated": bool(entry.get("estimated")),
                          "heat": round(min(1.0, count / n_images), 3) if n_images else 0.0})
        rows.append({"tag": row["tag"], "n_models": row.get("n_models"), "score": row.get("score"), "cells": cells})
    return rows


def write_html(results: Results, out: IO[str], views: Views | None = None, image_root: Path | None = None,
               thumb_size: int = 256, with_comparison: bool = True) -> None:
    """Write the report to `out` in two passes over the images: the first feeds the comparison (the
    folder figures sit at the top of the page), the second writes each image as it comes.

    Relative image paths are read from `image_root` (default: the current directory). The tag search
    also matches each tag's normalised name (the comparison's normaliser)."""
    opts = results.options
    views = views or Views(top=int(opts.get("top", 10) or 0), threshold=opts.get("threshold"))
    norm = views.normaliser or Normaliser()
    models = [m["name"] for m in results.models]
    comparer = Comparison(results.models, views.compare_top, views.threshold, norm, views.consensus_min)
    with tempfile.TemporaryFile("w+", encoding="utf-8") as per_image:
        n_images = 0
        for image in results.images():
            n_images += 1
            per_image.write(json.dumps(comparer.add(image), ensure_ascii=False) + "\n")
        summary = comparer.result()
        folder = summary["folder"]
        comparison = summary if with_comparison else None
        status_counts = folder["status_counts"]
        statuses = {s for c in status_counts.values() for s in c}
        statuses_sorted = [s for s in STATUS_ORDER if s in statuses] + sorted(statuses - set(STATUS_ORDER))
        env = _env()
        script = env.loader.get_source(env, "report.js")[0]  # type: ignore[union-attr]  # _env() sets a loader
        script_hash = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        timing = folder["timing"]
        pieces = env.get_template("report.html.j2").generate(
            doc=results.head, models=results.models, model_names=models, n_images=n_images,
            images=_image_views(results, per_image, models, image_root, thumb_size, norm, views.threshold,
                                views.top),
            statuses=statuses_sorted, comparison=comparison, definitions=summary["definitions"],
            folder=folder if with_comparison else {}, threshold=views.threshold, top=views.top,
            n_unique=comparer.n_images, heat_rows=_heat_rows(folder, models, comparer.n_images),
            pairwise=folder.get("pairwise") or {}, timing=timing, chart=_timing_chart(timing, models),
            status_counts=status_counts,
            status_total={s: sum(c.get(s, 0) for c in status_counts.values()) for s in statuses_sorted},
            data={"models": models, "statuses": statuses_sorted}, script=Markup(script), script_hash=script_hash)
        for piece in pieces:
            out.write(piece)


def to_html(document: dict[str, Any], comparison: dict[str, Any] | None = None, image_root: Path | None = None,
            thumb_size: int = 256, normaliser: Callable[[str], str] | None = None) -> str:
    """A document held in memory as one HTML page (small documents: tests). With `comparison` (or
    `document["comparison"]`), its settings (top-K, threshold) are used and the comparison is shown."""
    comparison = comparison if comparison is not None else document.get("comparison")
    opts = document.get("options") or {}
    top = comparison["top_k"] if comparison else int(opts.get("top", 10) or 0)
    threshold = comparison["threshold"] if comparison else opts.get("threshold")
    buf = io.StringIO()
    write_html(Results.of(document), buf, Views(top=top, threshold=threshold, normaliser=normaliser),
               image_root=image_root, thumb_size=thumb_size, with_comparison=comparison is not None)
    return buf.getvalue()
