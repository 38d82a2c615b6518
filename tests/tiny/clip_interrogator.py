"""Build the tiny models CLIP-Interrogator runs on: `python -m tests.tiny.clip_interrogator OUT_DIR` (modern env).

CLIP-Interrogator (PyPI clip-interrogator 0.6.0, the real package) pairs a BLIP captioner with an
OpenAI CLIP ViT-L/14. This writes the two tiny random models the other builders make, in the
layout the adapter's `--weights` folder takes: OUT_DIR/caption (tests/tiny/blip.py: native
BlipForConditionalGeneration + processor) and OUT_DIR/clip (tests/tiny/clip_zeroshot.py: open_clip's
hub layout, the real ViT-L-14 text vocabulary and 77-token context, the image tower 32 wide). The interrogator's
own label tables (100k flavors, 10k artists, ...) are embedded with the tiny CLIP when the adapter
loads, as the package does whenever its precomputed tables cannot be downloaded. That CLIP's text
tower is narrower than clip_zeroshot's (one 16-wide layer, still the real 77-token context): it
embeds ~111k phrases at the first load and 2,048 candidates a step in best mode (~7 s for the tables
on one core here, against ~50 s at 32 wide and 2 deep).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.tiny import blip, cli, clip_zeroshot

ENV = "modern"
# Registry entries this build stands in for -> the folder of the build their --weights names
# ("" = the build itself); tests/registry_coverage.py checks every entry has one.
COVERS = {
    "clip-interrogator": "",
}
# An infer option the adapter must answer with an error cell (tests/adapters/test_contract.py).
BAD_OPTION = {"mode": "psychic"}
# The contract's infer options (tests/adapters/test_contract.py): "best" (the default) chains flavours
# for ~30 s a photo on 2 cores; tests/adapters/test_clip_interrogator.py runs it.
CONTRACT_OPTIONS = {"mode": "fast", "max_flavors": 6}
CLIP_CFG = {
    **clip_zeroshot.MODEL_CFG,
    "text_cfg": {**clip_zeroshot.MODEL_CFG["text_cfg"], "width": 16, "heads": 1, "layers": 1},
}


def build(out: Path) -> None:
    (out / "caption").mkdir(parents=True, exist_ok=True)
    (out / "clip").mkdir(parents=True, exist_ok=True)
    blip.build(out / "caption")
    clip_zeroshot.build(out / "clip", CLIP_CFG)


if __name__ == "__main__":
    sys.exit(cli(build))
