"""One photo as the app shows it: the models side by side (the HTML report's cell views), its
consensus, and the chips to label: the union of the models' normalised tags, by consensus."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.compare import Comparison
from orchestrator.document import Cell, ImageEntry, ModelEntry, Tag
from orchestrator.report.html import TAGS_LISTED, _facts, _key
from orchestrator.store import ResultStore
from orchestrator.store.documents import stored_cells

LABEL_TOP_K = 25  # per model: the proposals a photo's chips offer (the labelling pool)
CELL_TOP = 10  # tags shown per cell before "more", as the report


def _tag_view(tag: Tag, norm: Callable[[str], str]) -> dict[str, Any]:
    score = float(tag.get("score", 0.0))
    name = str(tag.get("name", ""))
    return {
        "name": name,
        "score": score,
        "pct": round(max(0.0, min(1.0, score)) * 100, 1),
        "estimated": bool(tag.get("estimated")),
        "category": tag.get("category") or "",
        "key": _key(name),
        "norm": _key(norm(name)),
        "show_category": False,
    }


def _cell_view(model: str, result: Cell | None, top: int, norm: Callable[[str], str]) -> dict[str, Any]:
    """One model's cell as photo.html.j2 draws it (the report's cell, rendered on the server)."""
    if result is None:
        result = {"status": "missing", "message": "no result for this model"}
    tags = sorted(result.get("tags") or [], key=lambda t: -float(t.get("score", 0.0)))
    listed = [_tag_view(t, norm) for t in tags[:TAGS_LISTED]]
    if len({t["category"] for t in listed}) > 1:  # e.g. WD14's rating / character beside general tags
        for t in listed:
            t["show_category"] = True
    return {
        "model": model,
        "status": result.get("status", "missing"),
        "message": result.get("message") or "",
        "fix": result.get("fix") or "",
        "caption": result.get("caption") or "",
        "inference_s": result.get("inference_s"),
        "attempts": len(result.get("attempts") or []),
        "tags": listed[:top],
        "more": listed[top:],
        "unlisted": max(0, len(tags) - TAGS_LISTED),
    }


def photo_view(
    store: ResultStore, entries: list[ModelEntry], sha256: str, path: str, normalise: Callable[[str], str]
) -> dict[str, Any]:
    """Everything the photo page shows, from the store (one short read)."""
    kinds = {e["name"]: e.get("kind") or "tagger" for e in entries}
    models = list(kinds)
    stored = stored_cells(store, sha256, kinds)  # caption tags added, as documents
    results = {m: stored[m] for m in models if m in stored}
    image: ImageEntry = {"sha256": sha256, "path": path, "results": results}
    shown = Comparison(entries, CELL_TOP, None, normalise).add(image)
    pool = Comparison(entries, LABEL_TOP_K, None, normalise).add(image)
    judges = {e["name"] for e in entries if e.get("kind") == "judge"}
    labels = store.labels_of(sha256)
    chips: list[dict[str, Any]] = [
        {"tag": c["tag"], "n_models": c["n_models"], "score": c["score"], "models": c["models"]}
        for c in (pool["consensus"] if pool else [])
    ]
    offered = {c["tag"] for c in chips}
    for tag in labels.verdicts:  # a tag the user added (no model gave it) is a chip too
        if tag not in offered:
            chips.append({"tag": tag, "n_models": 0, "score": 0.0, "models": [], "added": True})
    for chip in chips:
        verdict = labels.verdicts.get(chip["tag"])
        chip["verdict"] = None if verdict is None else ("yes" if verdict.yes else "no")
    return {
        "sha256": sha256,
        "path": path,
        "facts": _facts(results),
        "agreement": shown["agreement"] if shown else None,
        "consensus": (shown["consensus"] if shown else [])[:8],
        "cells": [dict(_cell_view(m, results.get(m), CELL_TOP, normalise), synthesis=m in judges) for m in models],
        "chips": chips,
        "done": labels.done,
        "done_by": labels.done_by,
        "done_at": labels.done_at,
    }
