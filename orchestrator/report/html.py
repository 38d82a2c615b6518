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
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, Environment, PackageLoader
from markupsafe import Markup

from orchestrator.compare import timing as compare_timing
from orchestrator.compare import unique_images
from orchestrator.compare.normalise import Normaliser
from orchestrator.report.thumbnails import thumbnail

TAGS_LISTED = 60           # per cell: the top N shown, the rest up to this many behind "more"
CONSENSUS_PER_IMAGE = 8
STATUS_ORDER = ("ok", "no_tags", "timeout", "crashed", "error", "bad_image", "skipped", "missing")
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


def _image_views(document: dict[str, Any], comparison: dict[str, Any] | None, models: list[str],
                 image_root: Path | None, thumb_size: int, norm: Callable[[str], str]) -> list[dict[str, Any]]:
    opts = document.get("options") or {}
    threshold, top = opts.get("threshold"), int(opts.get("top", 10) or 0)
    per_image = (comparison or {}).get("images") or {}
    first_paths = {img["sha256"]: _resolve(img["path"], image_root) for img in unique_images(document)}
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # Pillow decodes outside the GIL
        made = pool.map(lambda path: thumbnail(path, thumb_size), first_paths.values())
        thumbs = dict(zip(first_paths, made, strict=True))  # duplicates share one thumbnail
    judges = {m["name"] for m in document["models"] if m.get("kind") == "judge"}
    views = []
    for index, image in enumerate(document["images"]):
        sha = image["sha256"]
        results = image.get("results") or {}
        compared = per_image.get(sha) or {}
        views.append({
            "id": f"img-{index}", "path": image["path"], "sha256": sha, "size_bytes": image.get("size_bytes"),
            "duplicate_of": image.get("duplicate_of"), "thumb": thumbs[sha][0], "thumb_error": thumbs[sha][1],
            "facts": _facts(results), "agreement": compared.get("agreement"),
            "consensus": (compared.get("consensus") or [])[:CONSENSUS_PER_IMAGE],
            "cells": [dict(_cell_view(m, results.get(m), threshold, top, norm), synthesis=m in judges)
                      for m in models]})
    return views


def _timing(document: dict[str, Any], folder: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The comparison's timing; without one, the same figures from the document itself."""
    if folder.get("timing"):
        return folder["timing"]
    images = unique_images(document)
    return {m["name"]: compare_timing.model_timing(m, [img["results"].get(m["name"]) or {} for img in images])
            for m in document["models"]}


def _status_counts(document: dict[str, Any], folder: dict[str, Any]) -> dict[str, dict[str, int]]:
    if folder.get("status_counts"):
        return folder["status_counts"]
    images = unique_images(document)
    return {m["name"]: compare_timing.status_counts([img["results"].get(m["name"]) for img in images])
            for m in document["models"]}


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


def _search_index(images: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per image and model, the listed tags as [name, normalised name], both as _key() writes them."""
    return [{"id": v["id"], "cells": {c["model"]: [[t["key"], t["norm"]] for t in c["tags"] + c["more"]]
                                      for c in v["cells"]}} for v in images]


def to_html(document: dict[str, Any], comparison: dict[str, Any] | None = None, image_root: Path | None = None,
            thumb_size: int = 256, normaliser: Callable[[str], str] | None = None) -> str:
    """Render a result document (and its comparison; default `document["comparison"]`) as one HTML page.

    Relative image paths are read from `image_root` (default: the current directory). The tag search
    also matches each tag's normalised name (`normaliser`: the comparison's, default Normaliser())."""
    comparison = comparison if comparison is not None else document.get("comparison")
    folder = (comparison or {}).get("folder") or {}
    opts = document.get("options") or {}
    models = [m["name"] for m in document["models"]]
    images = _image_views(document, comparison, models, image_root, thumb_size, normaliser or Normaliser())
    timing = _timing(document, folder)
    n_unique = len(unique_images(document))
    status_counts = _status_counts(document, folder)
    statuses = {c["status"] for v in images for c in v["cells"]} | {s for c in status_counts.values() for s in c}
    statuses_sorted = [s for s in STATUS_ORDER if s in statuses] + sorted(statuses - set(STATUS_ORDER))
    env = _env()
    script = env.loader.get_source(env, "report.js")[0]  # type: ignore[union-attr]
    script_hash = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return env.get_template("report.html.j2").render(
        doc=document, models=document["models"], model_names=models, images=images, statuses=statuses_sorted,
        comparison=comparison, definitions=(comparison or {}).get("definitions") or {}, folder=folder,
        threshold=opts.get("threshold"), top=opts.get("top", 10), n_unique=n_unique,
        heat_rows=_heat_rows(folder, models, n_unique),
        pairwise=folder.get("pairwise") or {}, timing=timing, chart=_timing_chart(timing, models),
        status_counts=status_counts,
        status_total={s: sum(c.get(s, 0) for c in status_counts.values()) for s in statuses_sorted},
        data={"models": models, "statuses": statuses_sorted, "images": _search_index(images)},
        script=Markup(script), script_hash=script_hash)
