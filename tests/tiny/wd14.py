"""Build a tiny random WD v3-style tagger: `python -m tests.tiny.wd14 OUT_DIR` (in the modern env).

Writes OUT_DIR/model.onnx and OUT_DIR/selected_tags.csv laid out like SmilingWolf's files: a timm
VisionTransformer at 448 px with 16 px patches (the wd-vit-tagger-v3 family, but 32 wide and 2
deep), NHWC float input, sigmoid probabilities out, a dynamic batch axis. Offline, seeded, < 1 MB.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from tests.tiny import cli

ENV = "modern"
# Registry entries this build stands in for -> the folder of the build their --weights names
# ("" = the build itself); tests/registry_coverage.py checks every entry has one.
COVERS = {
    "wd14": "",
    "wd14-eva02": "",
}
# An infer option the adapter must answer with an error cell (tests/adapters/test_contract.py).
BAD_OPTION = {"general_threshold": "high"}

IMG_SIZE = 448
PATCH = 16
# Real CSV order: the four ratings, then general tags, then character tags. Names are chosen to
# exercise the adapter: underscores to replace, kaomoji to keep, a parenthesised character name.
RATINGS = ["general", "sensitive", "questionable", "explicit"]
GENERAL = [
    "outdoors",
    "no_humans",
    "scenery",
    "ruins",
    "indoors",
    "brick_wall",
    "sky",
    "cup",
    "^_^",
    "0_0",
    "traditional_media",
]
CHARACTERS = ["hatsune_miku", "tiny_character_(test)", "another_character"]
CATEGORY = {"rating": 9, "general": 0, "character": 4}


def tag_rows() -> list[dict[str, object]]:
    """selected_tags.csv rows, in output order."""
    rows: list[dict[str, object]] = []
    groups = (("rating", RATINGS), ("general", GENERAL), ("character", CHARACTERS))
    for kind, names in groups:
        for name in names:
            rows.append(
                {
                    "tag_id": 9_999_999 - len(rows),
                    "name": name,
                    "category": CATEGORY[kind],
                    "count": 1_000_000 // (len(rows) + 1),
                }
            )
    return rows


def write_tags(path: Path, rows: list[dict[str, object]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["tag_id", "name", "category", "count"])
        writer.writeheader()
        writer.writerows(rows)


def build_model(
    num_classes: int, embed_dim: int = 32, depth: int = 2, num_heads: int = 2
):  # -> torch.nn.Module (torch is imported lazily, like the adapters)
    """A WD v3 ViT (tiny by default; bench/wd14_model.py asks for the real ViT-B/16 size)."""
    import torch
    from timm.models.vision_transformer import VisionTransformer

    class WDWrapper(torch.nn.Module):
        """NHWC float pixels in, per-tag probabilities out, like the published WD14 ONNX graphs."""

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.model(x.permute(0, 3, 1, 2)))

    torch.manual_seed(0)
    vit = VisionTransformer(
        img_size=IMG_SIZE,
        patch_size=PATCH,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        num_classes=num_classes,
    )
    # timm's default head init (std 0.02) puts every probability near 0.5; a wider head spreads
    # the scores over (0, 1) so that thresholds and per-image differences are visible in tests.
    torch.nn.init.normal_(vit.head.weight, std=0.5)
    return WDWrapper(vit).eval()


def export(model, path: Path) -> None:
    import torch

    example = torch.zeros(1, IMG_SIZE, IMG_SIZE, 3)
    # The legacy exporter needs no onnxscript (not in the env); opset 17 like the feasibility run.
    torch.onnx.export(
        model,
        (example,),
        str(path),
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        dynamo=False,
        opset_version=17,
    )


def build(out: Path) -> None:
    rows = tag_rows()
    write_tags(out / "selected_tags.csv", rows)
    export(build_model(len(rows)), out / "model.onnx")


if __name__ == "__main__":
    sys.exit(cli(build))
