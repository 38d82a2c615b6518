"""What the judge reads: every model's usable output for one image.

The text judge (runners/adapters/judge.py, kind "judge") never sees the photo; a captioner used as the
judge (`vision_judge`) is sent the photo with the same context. For each image it receives
{"outputs": [{"model", "kind", "caption", "tags"}]}: one entry per model whose cell is `ok`, in
the order the models ran, tags best first. Rating tags (wd14's general/sensitive/...) describe
the content's suitability, not the photo, and are left out.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from orchestrator.compare.cells import NON_CONTENT_CATEGORIES
from orchestrator.document import Cell
from orchestrator.models.registry import ModelSpec

VISION_JUDGE_SUFFIX = "-judge"


def vision_judge(spec: ModelSpec) -> ModelSpec:
    """A captioner as the judge (`--judge qwen25vl`): it is sent the photo AND the other models' outputs
    (runners/_vlm.py vision_judge). Its column is a synthesis, named `<model>-judge` so that the same
    captioner can also run as a model beside it; --weights and model.toml are the captioner's."""
    return dataclasses.replace(
        spec, name=spec.name + VISION_JUDGE_SUFFIX, kind="judge", infer={**spec.infer, "judge": True}
    )


def sees_image(spec: ModelSpec) -> bool:
    """True for a captioner judging (the photo is sent with the context), False for a text-only judge."""
    return bool(spec.infer.get("judge"))


def judge_context(results: dict[str, Cell], kinds: dict[str, str]) -> dict[str, Any]:
    """The judge's input for one image from its cells ({model: cell}) and each model's kind."""
    outputs = []
    for model, kind in kinds.items():
        cell = results.get(model)
        if kind == "judge" or not cell or cell.get("status") != "ok":
            continue
        tags = sorted(
            (t for t in cell.get("tags") or [] if t.get("category") not in NON_CONTENT_CATEGORIES),
            key=lambda t: -t["score"],
        )
        entry = {"model": model, "kind": kind, "caption": cell.get("caption"), "tags": [t["name"] for t in tags]}
        if entry["caption"] or entry["tags"]:
            outputs.append(entry)
    return {"outputs": outputs}
