"""A tiny WD14-architecture tagger with the real WD v3 tag count (10,861 outputs).

The same tiny ViT as tests/tiny/wd14.py (little compute), but as many outputs as
SmilingWolf/wd-vit-tagger-v3, so each cell carries as many raw scores as the real model's: what
the archive-scale test and bench/scale.py need to show that memory does not grow with the photos.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.tiny import cli
from tests.tiny.wd14 import CATEGORY, RATINGS, build_model, export, write_tags

ENV = "modern"
# Registry entries this build stands in for: none (a wider wd14 for the archive-scale test and
# bench/scale.py; tests/tiny/wd14.py covers the wd14 entries).
COVERS: dict[str, str] = {}
WD_V3_TAGS = 10_861  # rows of wd-vit-tagger-v3's selected_tags.csv: 4 ratings, then general, character
CHARACTER_TAGS = 2_000


def tag_rows() -> list[dict[str, object]]:
    general = WD_V3_TAGS - len(RATINGS) - CHARACTER_TAGS
    names = (
        [("rating", n) for n in RATINGS]
        + [("general", f"general_tag_{i:05d}") for i in range(general)]
        + [("character", f"character_{i:04d}") for i in range(CHARACTER_TAGS)]
    )
    return [
        {"tag_id": i, "name": name, "category": CATEGORY[kind], "count": 1000 - i % 1000}
        for i, (kind, name) in enumerate(names)
    ]


LIKELY_TAGS = 40  # about as many tags as a real WD v3 gives a photo above its thresholds


def build(out: Path) -> None:
    import torch

    rows = tag_rows()
    write_tags(out / "selected_tags.csv", rows)
    model = build_model(len(rows))
    # Scores like a real tagger's: nearly every tag far below the threshold, a few dozen above it
    # (a random head would put half of the 10,861 tags above 0.35 and make every photo "tag soup").
    with torch.no_grad():
        head = model.model.head
        torch.nn.init.normal_(head.weight, std=0.05)
        head.bias.fill_(-4.0)
        head.bias[len(RATINGS) : len(RATINGS) + LIKELY_TAGS] = 1.0
    export(model, out / "model.onnx")


if __name__ == "__main__":
    sys.exit(cli(build))
