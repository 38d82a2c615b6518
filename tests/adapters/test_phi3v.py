"""The phi3v adapter (phi35-vision) through the real runner host, against an INTERFACE STAND-IN.

NOT the upstream code: Phi-3.5-vision's remote code is not available offline, so the tiny snapshot's
code is tests/tiny/standins/phi3v_standin.py, written from the model card's usage (AutoModelForCausalLM
and AutoProcessor with trust_remote_code and num_crops, the `<|image_1|>` chat prompt, generate).
These tests check mltag's side (pinned remote-code load in the legacy env, prompts, token counts,
greedy determinism); they say nothing about the real Phi-3.5-vision code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adapters.vlm_cells import check_cell
from tests.support import SAMPLES

pytestmark = pytest.mark.adapter

SHORT = {"max_new_tokens": 5, "min_new_tokens": 5}


def test_pinned_load_generate_caption_and_tags(run_model, hub: Path) -> None:
    paths = [SAMPLES / "chelsea.png", SAMPLES / "rocket.jpg"]
    load, cells = run_model("phi35-vision", paths, ask="both", **SHORT)
    assert load["model_version"] == "c68f85286eac3fb376a17068e820e738a89c194a"
    assert any("attention eager; num_crops 16" in n for n in load["notes"])
    for cell, path in zip(cells, paths, strict=True):
        raw = check_cell(cell, path, ["caption", "tags"], new_tokens=5, hidden=("<|image|>", "<|end|>"))
        assert raw["generations"]["caption"]["prompt_tokens"] > 4  # image placeholders + prompt
    texts = [c["raw"]["generations"]["caption"]["text"] for c in cells]
    assert texts[0] != texts[1]
    _, again = run_model("phi35-vision", paths[::-1], ask="both", **SHORT)
    assert [c["raw"]["generations"]["caption"]["text"] for c in again[::-1]] == texts


def test_local_folder_and_num_crops(run_model, hub: Path) -> None:
    snapshot = next((hub / "models--microsoft--Phi-3.5-vision-instruct" / "snapshots").iterdir())
    load, [cell] = run_model(
        "phi35-vision", [SAMPLES / "coffee.png"], weights=snapshot, load_options={"num_crops": 4}, **SHORT
    )
    assert load["model_version"] == str(snapshot) and any("num_crops 4" in n for n in load["notes"])
    check_cell(cell, SAMPLES / "coffee.png", ["caption"], new_tokens=5)
