"""The HTML report: one self-contained file (no network at all) to look at rather than read.

Per image: a thumbnail and the models side by side (tags with score bars, captions, status,
timing). Folder level: the agreement matrix as a heat map, consensus tags, the model x model
agreement, the timing chart and the status counts. Filters (model, status, tag search) are
vanilla JS.

At archive size (thousands of photos) the page must open fast: the folder level is HTML, but each
image is a compact JSON record (`_image_record`) in blocks of CHUNK, with its thumbnail in a
parallel block; report.js draws the images a batch at a time as the reader scrolls and filters
over the records, so the browser neither parses nor lays out what nobody looks at.

Model output is untrusted text (a VLM can write `<script>`): Jinja2 autoescapes every value, the
JSON blocks have `<`, `>`, `&` and `'` escaped (as Jinja's `tojson`), report.js sets every model
string as text (never as markup), and a Content-Security-Policy allows only this file's own script
(by hash) and data: images, so the page can neither run injected code nor reach the network.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
import os
import tempfile
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import IO, Any, Literal

from jinja2 import ChainableUndefined, Environment, PackageLoader
from jinja2.filters import do_filesizeformat
from jinja2.utils import htmlsafe_json_dumps
from markupsafe import Markup

from orchestrator import jsontext
from orchestrator.compare import Comparison
from orchestrator.compare.normalise import Normaliser
from orchestrator.document import (
    Cell,
    ComparisonResult,
    FolderComparison,
    ImageComparison,
    ImageEntry,
    ImageRow,
    ModelTiming,
    Results,
    Tag,
)
from orchestrator.report.comparison_views import Views
from orchestrator.report.thumbnails import cached_thumbnail, data_uri, thumbnail

TAGS_LISTED = 60  # per cell: the top N shown, the rest up to this many behind "more"
CONSENSUS_PER_IMAGE = 8
STATUS_ORDER = ("ok", "no_tags", "timeout", "crashed", "error", "bad_image", "skipped", "missing")
THUMBNAILS_AHEAD = 16  # thumbnails made ahead of the image being compared
CHUNK = 200  # images per data block: the script parses a block's thumbnails only when drawn
TIMING_METRICS: tuple[tuple[Literal["load_s", "warmup_s", "mean_s"], str], ...] = (
    ("load_s", "load"),
    ("warmup_s", "warm-up"),
    ("mean_s", "mean inference"),
)


@cache
def _env() -> Environment:
    # ChainableUndefined: a document read back from an older store may lack optional keys; render
    # them as blanks rather than fail the whole report.
    env = Environment(
        loader=PackageLoader("orchestrator.report", "templates"),
        autoescape=True,
        undefined=ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
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


def _tag_record(tag: Tag, norm: Callable[[str], str]) -> list[Any]:
    """[name, score (null when not a finite number: JSON has no NaN), estimated (0/1), category,
    normalised key]; the script derives the plain key itself."""
    name = str(tag.get("name", ""))
    score = tag.get("score", 0.0)
    finite = _is_number(score) and math.isfinite(score)
    return [
        name,
        float(score) if finite else None,
        int(bool(tag.get("estimated"))),
        tag.get("category") or "",
        _key(norm(name)),
    ]


def _cell_record(
    result: Cell | None, threshold: float | None, top: int, norm: Callable[[str], str], synthesis: bool
) -> dict[str, Any]:
    """One cell as report.js draws it (`drawCell`): short keys, since a report holds thousands; the
    TAGS_LISTED best tags only (the JSON output has them all)."""
    if result is None:
        result = {"status": "missing", "message": "no result for this model"}
    tags = sorted(result.get("tags") or [], key=lambda t: -float(t.get("score", 0.0)))
    if threshold is not None:
        tags = [t for t in tags if float(t.get("score", 0.0)) >= threshold]
    listed = [_tag_record(t, norm) for t in tags[:TAGS_LISTED]]
    record: dict[str, Any] = {"s": result.get("status", "missing"), "g": listed, "k": top if top > 0 else len(listed)}
    optional = {
        "m": result.get("message"),
        "x": result.get("fix"),
        "q": result.get("caption"),
        "t": _secs(result["inference_s"]) if result.get("inference_s") is not None else None,
        "n": len(result.get("attempts") or []),
        "u": max(0, len(tags) - TAGS_LISTED),
        "y": int(synthesis),
        # e.g. WD14's rating / character beside its general tags: the category is shown
        "c": int(len({t[3] for t in listed}) > 1),
    }
    record.update((k, v) for k, v in optional.items() if v)
    return record


def _image_record(
    index: int,
    image: ImageEntry,
    compared: ImageComparison | None,
    thumb_error: str | None,
    models: list[str],
    judges: set[str],
    views: Views,
    norm: Callable[[str], str],
) -> dict[str, Any]:
    """One image as report.js draws it (`drawImage`); its thumbnail travels apart (THUMBS blocks)."""
    results = image.get("results") or {}
    record: dict[str, Any] = {
        "i": f"img-{index}",
        "p": image["path"],
        "h": image["sha256"],
        "r": [_cell_record(results.get(m), views.threshold, views.top, norm, m in judges) for m in models],
    }
    optional = {
        "b": do_filesizeformat(image["size_bytes"]) if image.get("size_bytes") is not None else None,
        "d": image.get("duplicate_of"),
        "f": _facts(results),
        "e": thumb_error,
        "a": _num(agreement) if compared and (agreement := compared.get("agreement")) is not None else None,
        "cs": [
            [c["tag"], c["n_models"], _num(c["score"], 3)]
            for c in ((compared.get("consensus") or []) if compared else [])[:CONSENSUS_PER_IMAGE]
        ],
    }
    record.update((k, v) for k, v in optional.items() if v)
    return record


def _facts(results: dict[str, Cell]) -> str:
    for result in results.values():
        info = (result.get("image") if result else None) or {}
        if info.get("width"):
            parts = [f"{info['width']}×{info.get('height', '?')}", info.get("format") or "", info.get("mode") or ""]
            if info.get("exif_orientation") not in (None, 1):
                parts.append(f"EXIF orientation {info['exif_orientation']}")
            return " ".join(p for p in parts if p)
    return ""


def _resolve(path: str, image_root: Path | None) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() or image_root is None else image_root / p


def _source_path(image: ImageRow, image_root: Path | None) -> Path:
    """The file to make the thumbnail from: the exact bytes of a name that is not UTF-8."""
    if image.get("path_bytes"):
        return Path(os.fsdecode(base64.b64decode(image["path_bytes"])))
    return _resolve(image["path"], image_root)


def _thumbnail(
    image: ImageRow, image_root: Path | None, thumb_size: int, cache: Path | None
) -> tuple[str | None, str | None]:
    source = _source_path(image, image_root)
    if cache is None:
        return thumbnail(source, thumb_size)
    return data_uri(cached_thumbnail(cache, image["sha256"], source, thumb_size))


def _thumbnails(
    images: Iterator[ImageEntry], image_root: Path | None, thumb_size: int, cache: Path | None
) -> Iterator[tuple[ImageEntry, tuple[str | None, str | None]]]:
    """Each image with its thumbnail (from the thumbnail cache when one is given), made a few images
    ahead on threads (Pillow decodes outside the GIL); never more than AHEAD in flight, so memory
    does not grow with the folder."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        window: deque[tuple[ImageEntry, Future[tuple[str | None, str | None]]]] = deque()
        for image in images:
            window.append((image, pool.submit(_thumbnail, image, image_root, thumb_size, cache)))
            if len(window) >= THUMBNAILS_AHEAD:
                first, done = window.popleft()
                yield first, done.result()
        while window:
            first, done = window.popleft()
            yield first, done.result()


def _timing_chart(timing: dict[str, ModelTiming], models: list[str]) -> dict[str, Any]:
    """Geometry of the inline SVG: one panel per metric, each scaled to its own maximum (load
    takes seconds, inference milliseconds: one axis would flatten the latter to nothing)."""
    label_w, bar_w, value_w, row_h, head_h = 150, 320, 80, 18, 22
    panels, y = [], 0
    for key, title in TIMING_METRICS:
        values = {m: t.get(key) if (t := timing.get(m)) else None for m in models}
        top = max((v for v in values.values() if v), default=0.0)
        rows = []
        for i, m in enumerate(models):
            v = values[m]
            rows.append(
                {
                    "model": m,
                    "value": v,
                    "y": y + head_h + i * row_h,
                    "w": round(bar_w * v / top, 1) if v and top else 0,
                }
            )
        panels.append({"title": title, "key": key, "y": y, "rows": rows})
        y += head_h + len(models) * row_h + 10
    return {
        "panels": panels,
        "height": y,
        "width": label_w + bar_w + value_w,
        "label_w": label_w,
        "bar_w": bar_w,
        "row_h": row_h,
    }


def _heat_rows(folder: FolderComparison, models: list[str], n_images: int) -> list[dict[str, Any]]:
    rows = []
    for row in folder.get("matrix") or []:
        cells = []
        for m in models:
            entry = row["models"].get(m)
            count = int(entry.get("images", 0) or 0) if entry else 0
            cells.append(
                {
                    "model": m,
                    "images": count,
                    "mean_score": entry.get("mean_score") if entry else None,
                    "estimated": bool(entry.get("estimated")) if entry else False,
                    "heat": round(min(1.0, count / n_images), 3) if n_images else 0.0,
                }
            )
        rows.append({"tag": row["tag"], "n_models": row.get("n_models"), "score": row.get("score"), "cells": cells})
    return rows


def _json_block(value: Any) -> Markup:
    """JSON for a <script type="application/json"> block: < > & ' escaped, as Jinja's `tojson` does,
    so no model text can close the block."""
    return htmlsafe_json_dumps(value, dumps=_compact_json)


def _compact_json(value: Any, **_: Any) -> str:
    return jsontext.dumps(value)  # orjson: compact, non-ASCII kept; a record holds no NaN (_tag_record)


def _spooled_chunks(records: IO[str], thumbs: IO[str]) -> Iterator[dict[str, Markup]]:
    """The image data in blocks of CHUNK images, read back from the spool files (one JSON line an image),
    so the page is written without holding the folder in memory."""
    records.seek(0)
    thumbs.seek(0)
    while True:
        lines = [line for line in (records.readline() for _ in range(CHUNK)) if line]
        if not lines:
            return
        uris = [jsontext.loads(thumbs.readline()) for _ in lines]
        yield {"records": _json_block([jsontext.loads(line) for line in lines]), "thumbs": _json_block(uris)}


def write_html(
    results: Results,
    out: IO[str],
    views: Views | None = None,
    image_root: Path | None = None,
    thumb_size: int = 256,
    with_comparison: bool = True,
    thumb_cache: Path | None = None,
) -> None:
    """Write the report to `out` after one pass over the images: each image is compared, its record
    and thumbnail spooled to temporary files (memory stays flat), then the page is written: folder
    figures first, then the records in blocks that the page's script draws as the reader scrolls.

    Relative image paths are read from `image_root` (default: the current directory). The tag search
    also matches each tag's normalised name (the comparison's normaliser). `thumb_cache`: the
    thumbnail cache folder shared with `mltag serve` (the CLI passes paths.thumbnails_dir()); None
    makes every thumbnail from its file."""
    opts = results.options
    views = views or Views(top=int(opts.get("top", 10) or 0), threshold=opts.get("threshold"))
    norm = views.normaliser or Normaliser()
    models = [m["name"] for m in results.models]
    judges = {m["name"] for m in results.models if m.get("kind") == "judge"}
    comparer = Comparison(results.models, views.compare_top, views.threshold, norm, views.consensus_min)
    with (
        tempfile.TemporaryFile("w+", encoding="utf-8") as records,
        tempfile.TemporaryFile("w+", encoding="utf-8") as thumbs,
    ):
        n_images = 0
        for image, (thumb, thumb_error) in _thumbnails(results.images(), image_root, thumb_size, thumb_cache):
            compared = comparer.add(image)
            records.write(
                _compact_json(_image_record(n_images, image, compared, thumb_error, models, judges, views, norm)) + "\n"
            )
            thumbs.write(jsontext.dumps(thumb) + "\n")
            n_images += 1
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
            doc=results.head,
            models=results.models,
            model_names=models,
            n_images=n_images,
            chunks=_spooled_chunks(records, thumbs),
            statuses=statuses_sorted,
            comparison=comparison,
            definitions=summary["definitions"],
            folder=folder if with_comparison else {},
            threshold=views.threshold,
            top=views.top,
            n_unique=comparer.n_images,
            heat_rows=_heat_rows(folder, models, comparer.n_images),
            pairwise=folder.get("pairwise") or {},
            timing=timing,
            chart=_timing_chart(timing, models),
            status_counts=status_counts,
            status_total={s: sum(c.get(s, 0) for c in status_counts.values()) for s in statuses_sorted},
            data={"models": models, "statuses": statuses_sorted},
            script=Markup(script),
            script_hash=script_hash,
        )
        for piece in pieces:
            out.write(piece)


def to_html(
    document: Mapping[str, Any],
    comparison: ComparisonResult | None = None,
    image_root: Path | None = None,
    thumb_size: int = 256,
    normaliser: Callable[[str], str] | None = None,
) -> str:
    """A document held in memory as one HTML page (small documents: tests). With `comparison` (or
    `document["comparison"]`), its settings (top-K, threshold) are used and the comparison is shown."""
    comparison = comparison if comparison is not None else document.get("comparison")
    opts = document.get("options") or {}
    top = comparison["top_k"] if comparison else int(opts.get("top", 10) or 0)
    threshold = comparison["threshold"] if comparison else opts.get("threshold")
    buf = io.StringIO()
    write_html(
        Results.of(document),
        buf,
        Views(top=top, threshold=threshold, normaliser=normaliser),
        image_root=image_root,
        thumb_size=thumb_size,
        with_comparison=comparison is not None,
    )
    return buf.getvalue()
