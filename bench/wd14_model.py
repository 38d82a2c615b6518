"""A real-size WD v3 tagger with random weights, for benchmarks: `python -m bench.wd14_model OUT_DIR`
inside the modern env (torch, timm). Offline, seeded.

The architecture of SmilingWolf/wd-vit-tagger-v3: timm ViT-B/16 at 448 px (768 wide, 12 deep,
12 heads), 10,861 outputs (4 ratings, general tags, character tags), NHWC float input, sigmoid
out, exported to ONNX exactly as tests/tiny/wd14.py exports the tiny one. ~380 MB.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.tiny import cli
from tests.tiny.wd14 import build_model, export, write_tags

ENV = "modern"
OUTPUTS, RATINGS, CHARACTERS = 10_861, 4, 2_751  # the published selected_tags.csv's shape


def tag_rows() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for i in range(OUTPUTS):
        category = 9 if i < RATINGS else (4 if i >= OUTPUTS - CHARACTERS else 0)
        rows.append({"tag_id": i, "name": f"tag_{i:05d}", "category": category, "count": OUTPUTS - i})
    return rows


def build(out: Path) -> None:
    import torch

    model = build_model(OUTPUTS, embed_dim=768, depth=12, num_heads=12)
    # Scores shaped like a trained tagger's: most tags near 0, a few dozen above the 0.35 threshold
    # (logits ~ N(-5, 1.4)), so that mltag's per-tag work is what real weights would cause.
    with torch.no_grad():
        torch.nn.init.normal_(model.model.head.weight, std=0.05)
        torch.nn.init.constant_(model.model.head.bias, -5.0)
    write_tags(out / "selected_tags.csv", tag_rows())
    export(model, out / "model.onnx")


if __name__ == "__main__":
    sys.exit(cli(build))
