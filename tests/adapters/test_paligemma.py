"""The paligemma adapter end to end: tiny random PaliGemmas through the real runner host.

Two registry models share runners/adapters/paligemma.py: `paligemma` (PaliGemma 2, Gemma 2 decoder) and
`paligemma-long` (a PaliGemma 1 fine-tune, Gemma decoder); tests/tiny/paligemma.py builds one tiny
model of each architecture. A random model's text means nothing, so these tests check structure
and invariants: statuses, token counts, options reaching generate(), the prompt reaching the
model, and no processor warning about `<image>` (batch == one by one: tests/adapters/test_contract.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adapters.vlm_cells import check_cell, rgba_image
from tests.support import SAMPLES

pytestmark = pytest.mark.adapter

FLOAT32 = {"dtype": {"cpu": "float32"}}
IMAGE_WARNING = "You are passing both `text` and `images`"


def _check_cell(
    cell: dict, path: Path, prompts: dict[str, str], batch_size: int, max_new: int, image_tokens: int
) -> None:
    # prompts as given, without the adapter's <image>; the prompt tokens: <image> x image_tokens, <bos>, at
    # least one prompt token, "\n"
    check_cell(
        cell,
        path,
        prompts,
        max_new=max_new,
        batch_size=batch_size,
        min_prompt_tokens=image_tokens + 3,
        hidden=("<image>",),
    )


def test_paligemma2_captions_with_the_model_toml_defaults(run_model, tiny: Path, facts: dict, tmp_path: Path) -> None:
    paths = [SAMPLES / "chelsea.png", rgba_image(tmp_path)]
    load, cells = run_model("paligemma", paths, weights=tiny / "paligemma2", max_new_tokens=6)
    assert load["device"] == "cpu" and load["dtype"] == "bfloat16"  # model.toml [load] dtype for cpu
    assert str(tiny / "paligemma2") in load["model_version"] and "weights" in load["model_version"]
    assert any(f"<image> x {facts['image_tokens']} + <bos> + prompt" in note for note in load["notes"])
    assert any("left padding" in note for note in load["notes"])
    assert [c["id"] for c in cells] == ["img0", "img1"]
    for cell, path in zip(cells, paths, strict=True):
        _check_cell(cell, path, {"caption": "describe en"}, 2, 6, facts["image_tokens"])
        assert cell["raw"]["generate"]["no_repeat_ngram_size"] == 4  # the model.toml guard reaches generate()
    assert IMAGE_WARNING not in run_model.log.read_text()


def test_paligemma1_exact_lengths_and_the_cards_repetition_penalty(run_model, tiny: Path, facts: dict) -> None:
    """paligemma-long (Gemma 1 decoder): the card's repetition penalty, forced lengths (batch == one by
    one: tests/adapters/test_contract.py)."""
    paths = [SAMPLES / "rocket.jpg", SAMPLES / "coffee.png"]
    options = {"max_new_tokens": 5, "min_new_tokens": 5}
    load, batch = run_model("paligemma-long", paths, weights=tiny / "paligemma1", load_options=FLOAT32, **options)
    assert load["dtype"] == "float32"
    for cell, path in zip(batch, paths, strict=True):
        _check_cell(cell, path, {"caption": "caption en"}, 2, 5, facts["image_tokens"])
        assert cell["raw"]["generate"]["repetition_penalty"] == 1.1
        assert cell["raw"]["generations"]["caption"]["new_tokens"] == 5
    assert IMAGE_WARNING not in run_model.log.read_text()


def test_ask_both_runs_both_prompts_and_the_prompt_reaches_the_model(run_model, tiny: Path, facts: dict) -> None:
    path = SAMPLES / "brick.png"
    prompts = {"caption": "caption en", "tags": "answer en list the objects and materials in this photo"}
    _, [cell] = run_model(
        "paligemma",
        [path],
        weights=tiny / "paligemma2",
        load_options=FLOAT32,
        ask="both",
        prompt=prompts["caption"],
        tags_prompt=prompts["tags"],
        max_new_tokens=4,
        min_new_tokens=4,
    )
    _check_cell(cell, path, prompts, 1, 4, facts["image_tokens"])
    gens = cell["raw"]["generations"]
    assert gens["caption"]["new_tokens"] == gens["tags"]["new_tokens"] == 4
    # same image, longer prompt: more prompt tokens, and the image tokens are counted in both
    assert gens["tags"]["prompt_tokens"] > gens["caption"]["prompt_tokens"] >= facts["image_tokens"] + 3


def test_an_image_token_in_the_prompt_is_an_error_cell(run_model, tiny: Path) -> None:
    _, [cell] = run_model(
        "paligemma", [SAMPLES / "coffee.png"], weights=tiny / "paligemma2", prompt="<image>describe en"
    )
    assert cell["status"] == "error" and "must not contain <image>" in cell["message"]
