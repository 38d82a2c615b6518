"""The qwen_vl adapter end to end: tiny random Qwen2.5-VL and Qwen2-VL through the real runner host.

Three registry models share runners/adapters/qwen_vl.py: `qwen25vl` (Qwen2.5-VL), `qwen2vl` and `qwen2vl-2b`
(Qwen2-VL); tests/tiny/qwen_vl.py builds one tiny checkpoint of each architecture, laid out like
the Hub repos. A random model's text means nothing, so these tests check structure and invariants:
statuses, token counts, the image token count the pixel budget gives (the real patch geometry:
one token per 28 x 28 px of the resized image), the prompt reaching the model, load option errors,
and the refusal of foreign checkpoints (batch == one by one, left padded: tests/adapters/test_contract.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.errors import RemoteError
from runners.adapters.qwen_vl import MODEL_CLASSES
from tests.adapters.vlm_cells import check_cell, rgba_image, runs
from tests.registry_coverage import checkpoints
from tests.support import SAMPLES

pytestmark = pytest.mark.adapter

SHORT = {"max_new_tokens": 6, "min_new_tokens": 6}  # EOS held back: exactly 6 new tokens
SMALL = {"max_pixels": 64 * 28 * 28}  # at most 64 image tokens: fast, and still a different count per image


def _check_cell(cell: dict, path: Path, tasks: tuple[str, ...] = ("caption",), new_tokens: int = 6) -> None:
    raw = check_cell(cell, path, tasks, new_tokens=new_tokens, hidden=("<|im_start|>", "<|image_pad|>"))
    vision = raw["vision"]
    resized_w, resized_h = vision["resized"]
    assert resized_w % 28 == 0 and resized_h % 28 == 0
    assert vision["min_pixels"] <= resized_w * resized_h <= vision["max_pixels"]
    assert vision["image_tokens"] == resized_w * resized_h // (28 * 28)
    for run in raw["generations"].values():
        # the image tokens, <|vision_start|>/<|vision_end|>, the system message and the question
        assert run["prompt"] and run["prompt_tokens"] > vision["image_tokens"] + 10


def test_qwen25vl_with_the_cpu_defaults(run_model, tiny: Path, tmp_path: Path) -> None:
    paths = [SAMPLES / "chelsea.png", rgba_image(tmp_path)]
    load, cells = run_model("qwen25vl", paths, weights=tiny / "qwen2_5_vl", **SHORT)
    assert load["device"] == "cpu" and load["dtype"] == "bfloat16"  # model.toml's [load] dtype for cpu
    assert str(tiny / "qwen2_5_vl") in load["model_version"] and "weights" in load["model_version"]
    assert any("Qwen2_5_VLForConditionalGeneration" in note for note in load["notes"])
    assert any("3,136..200,704 px" in note and "(4..256 tokens)" in note for note in load["notes"])
    assert any("left padding" in note for note in load["notes"])
    assert [c["id"] for c in cells] == ["img0", "img1"]
    for cell, path in zip(cells, paths, strict=True):
        _check_cell(cell, path)
        assert cell["raw"]["batch_size"] == 2
        assert (cell["raw"]["vision"]["min_pixels"], cell["raw"]["vision"]["max_pixels"]) == (3136, 200704)
    # 451 x 300 -> 448 x 308 px = 16 x 11 tokens; 120 x 90 -> 112 x 84 px = 4 x 3 tokens
    assert [c["raw"]["vision"]["resized"] for c in cells] == [[448, 308], [112, 84]]
    assert [c["raw"]["vision"]["image_tokens"] for c in cells] == [176, 12]
    # the processor expanded exactly that many image tokens: the prompts differ by nothing else
    prompt_tokens = runs(cells, "prompt_tokens")
    assert prompt_tokens[0] - prompt_tokens[1] == 176 - 12
    assert runs(cells, "text")[0] != runs(cells, "text")[1]  # the output depends on the image


# every architecture the builder makes, once (qwen2vl and qwen2vl-2b share the qwen2_vl checkpoint)
@pytest.mark.parametrize(("checkpoint", "model"), checkpoints("qwen_vl").items())
def test_the_pixel_budget_sets_each_images_tokens_in_a_padded_batch(
    run_model, tiny: Path, model: str, checkpoint: str, tmp_path: Path
) -> None:
    """Images of different sizes get different image token counts, so the batch is left-padded (and
    equals the one-by-one results: tests/adapters/test_contract.py)."""
    paths = [SAMPLES / "brick.png", rgba_image(tmp_path)]
    load, batch = run_model(model, paths, weights=tiny / checkpoint, load_options=SMALL, **SHORT)
    assert any(MODEL_CLASSES[checkpoint] in note for note in load["notes"])
    # 512 x 512 -> 224 x 224 px = 8 x 8 tokens; 120 x 90 -> 112 x 84 px = 4 x 3 tokens: 52 tokens of padding
    assert [c["raw"]["vision"]["image_tokens"] for c in batch] == [64, 12]
    assert runs(batch, "prompt_tokens")[0] - runs(batch, "prompt_tokens")[1] == 64 - 12
    assert runs(batch, "text")[0] != runs(batch, "text")[1]  # the output depends on the image
    for cell, path in zip(batch, paths, strict=True):
        _check_cell(cell, path)
        assert cell["raw"]["batch_size"] == 2


def test_ask_both_and_the_prompt_reaches_the_model(run_model, tiny: Path) -> None:
    path = SAMPLES / "coffee.png"
    base = "Describe this photo."
    _, [both, again] = run_model(
        "qwen2vl", [path, path], weights=tiny / "qwen2_vl", load_options=SMALL, ask="both", prompt=base, **SHORT
    )
    _check_cell(both, path, tasks=("caption", "tags"))
    gens = both["raw"]["generations"]
    assert gens["caption"]["prompt"] == base and gens["tags"]["prompt"].startswith("List 15 to 30 short tags")
    assert gens["caption"]["text"] != gens["tags"]["text"]
    # the same image with the longer tags question: only the text part of the prompt grows
    assert gens["tags"]["prompt_tokens"] > gens["caption"]["prompt_tokens"] + 10
    assert again["raw"]["generations"] == gens  # the same image twice in a batch: the same outputs


def test_invalid_load_option_fails_the_load_with_its_name(run_model, tiny: Path) -> None:
    with pytest.raises(RemoteError, match=r"load option max_pixels must be a pixel count >= 784"):
        run_model("qwen25vl", [SAMPLES / "coffee.png"], weights=tiny / "qwen2_5_vl", load_options={"max_pixels": 100})


def test_a_foreign_checkpoint_is_refused_with_the_fix(run_model, tmp_path: Path) -> None:
    remote = tmp_path / "Qwen-VL-Chat"
    remote.mkdir()
    (remote / "config.json").write_text(
        json.dumps(
            {
                "model_type": "qwen",
                "architectures": ["QWenLMHeadModel"],
                "auto_map": {"AutoModelForCausalLM": "modeling_qwen.QWenLMHeadModel"},
            }
        )
    )
    with pytest.raises(RemoteError, match=r"remote-code checkpoint .*Qwen/Qwen2.5-VL-7B-Instruct"):
        run_model("qwen25vl", [SAMPLES / "coffee.png"], weights=remote)
