"""What one cell gives the comparison: its normalised content tags with their best scores, and the
helpers that read documents image by image (model names, unique images). Rules: comparison.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from orchestrator.compare.captags import caption_tags
from orchestrator.document import Body, Cell, ImageEntry

CLOSED_KINDS = frozenset({"tagger", "zero-shot"})  # a fixed label set: the model can give no other tag
NON_CONTENT_CATEGORIES = frozenset({"rating"})

Scored = tuple[float, bool]  # (score, estimated)
CellTags = dict[str, Scored]  # normalised tag -> best score in the cell


def cell_tags(cell: Cell | None, normalise: Callable[[str], str], threshold: float | None) -> CellTags:
    """The normalised tags of one cell (ok cells only), each with its best score and estimated flag."""
    if not cell or cell.get("status") != "ok":
        return {}
    caption = cell.get("caption")
    tags = cell.get("tags") or (caption_tags(caption) if caption else [])
    out: CellTags = {}
    for tag in tags:
        if tag.get("category") in NON_CONTENT_CATEGORIES:
            continue
        score = tag.get("score")
        if not isinstance(score, int | float) or not math.isfinite(score):
            continue
        if threshold is not None and score < threshold:
            continue
        name = normalise(str(tag.get("name", "")))
        if name and (name not in out or score > out[name][0]):
            out[name] = (float(score), bool(tag.get("estimated")))
    return out


def top(tags: CellTags, k: int) -> CellTags:
    """The k highest-scoring tags (ties: by name); k <= 0 keeps all."""
    ranked = sorted(tags.items(), key=lambda item: (-item[1][0], item[0]))
    return dict(ranked[:k] if k > 0 else ranked)


def jaccard(a: set[str], b: set[str]) -> float | None:
    """|A∩B| / |A∪B|; None when both are empty (nothing to agree on)."""
    union = a | b
    return len(a & b) / len(union) if union else None


def model_names(document: Body) -> list[str]:
    """Document order; a model present only in the cells is appended (never silently dropped)."""
    names = [m["name"] for m in document.get("models", [])]
    for image in document.get("images", []):
        names += [n for n in image.get("results", {}) if n not in names]
    return names


def unique_images(document: Body) -> list[ImageEntry]:
    """One entry per content hash, the first listed (a duplicate_of copy shares its result)."""
    seen: set[str] = set()
    out = []
    for image in document.get("images", []):
        if image["sha256"] not in seen:
            seen.add(image["sha256"])
            out.append(image)
    return out


def vocab_scores(scores: dict[str, Any], normalise: Callable[[str], str]) -> dict[str, float]:
    """A tagger's raw scores (every label) under their normalised names, the best score per name."""
    out: dict[str, float] = {}
    for label, score in scores.items():
        if isinstance(score, int | float) and math.isfinite(score):
            name = normalise(str(label))
            if name and score > out.get(name, -math.inf):
                out[name] = float(score)
    return out
