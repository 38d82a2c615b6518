"""The internvl adapter end to end: a tiny random InternVL (-hf format) through the real runner host.

A random model's text means nothing, so the end-to-end tests check structure and invariants:
statuses, token counts, tiling, prompts reaching the model, batch results equal to one-by-one
results (left padding), batch order, option errors, and the refusal of remote-code checkpoints.
The tiny model's tile size and image tokens per tile are in its facts.json (tests/tiny/internvl.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.errors import RemoteError
from runners.adapters.internvl import DEFAULT_MAX_PATCHES
from tests.adapters.vlm_cells import check_cell, rgba_image, runs
from tests.support import SAMPLES

pytestmark = pytest.mark.adapter

MODEL = "internvl3"
SHORT = {"max_new_tokens": 6, "min_new_tokens": 6}  # EOS held back: exactly 6 new tokens


def _check_cell(
    cell: dict, path: Path, facts: dict, tasks: tuple[str, ...] = ("caption",), new_tokens: int = 6
) -> None:
    raw = check_cell(cell, path, tasks, new_tokens=new_tokens, min_prompt_tokens=facts["tokens_per_tile"] + 1)
    assert all(run["prompt"] for run in raw["generations"].values())
    assert raw["tiling"]["tiles"] >= 1 and isinstance(raw["tiling"]["crop_to_patches"], bool)


def test_captions_of_a_batch(run_model, tiny: Path, facts: dict, tmp_path: Path) -> None:
    paths = [SAMPLES / "chelsea.png", rgba_image(tmp_path)]
    # crop_to_patches=false wins over max_patches: one view per image, so both rows have the same length
    load, cells = run_model(MODEL, paths, weights=tiny, crop_to_patches=False, max_patches=12, **SHORT)
    assert load["device"] == "cpu" and load["dtype"] == "bfloat16"  # model.toml's [load] dtype for cpu
    assert str(tiny) in load["model_version"]
    assert any("estimates" in note for note in load["notes"])
    assert any("left padding" in note for note in load["notes"])
    assert [c["id"] for c in cells] == ["img0", "img1"]
    for cell, path in zip(cells, paths, strict=True):
        _check_cell(cell, path, facts)
        assert cell["raw"]["tiling"] == {"crop_to_patches": False, "max_patches": 1, "tiles": 1}
        assert cell["raw"]["batch_size"] == 2
    assert len({c["raw"]["generations"]["caption"]["prompt_tokens"] for c in cells}) == 1
    assert runs(cells, "text")[0] != runs(cells, "text")[1]  # the output depends on the image


def test_a_padded_batch_gives_the_one_by_one_results(run_model, tiny: Path, facts: dict) -> None:
    """Tiling cuts the 3:2 and the square image into different tile counts, so the batch is left-padded."""
    paths = [SAMPLES / "chelsea.png", SAMPLES / "brick.png"]
    options = {**SHORT, "max_patches": 6}
    _, batch = run_model(MODEL, paths, weights=tiny, **options)
    singles = [run_model(MODEL, [path], weights=tiny, **options)[1][0] for path in paths]
    for cell, path in zip(batch, paths, strict=True):
        _check_cell(cell, path, facts)
        assert cell["raw"]["batch_size"] == 2
    # 451 x 300 -> a 3 x 2 grid + thumbnail; 512 x 512 -> 2 x 2 + thumbnail
    assert [c["raw"]["tiling"] for c in batch] == [
        {"crop_to_patches": True, "max_patches": 6, "tiles": 7},
        {"crop_to_patches": True, "max_patches": 6, "tiles": 5},
    ]
    prompt_tokens = [c["raw"]["generations"]["caption"]["prompt_tokens"] for c in batch]
    assert prompt_tokens[0] - prompt_tokens[1] == 2 * facts["tokens_per_tile"]  # rows of different lengths
    assert runs(batch, "text")[0] != runs(batch, "text")[1]  # distinct outputs, or the order check is void
    for one, batched in zip(singles, batch, strict=True):  # same order, same tokens
        assert one["raw"]["batch_size"] == 1
        assert one["raw"]["generations"]["caption"]["text"] == batched["raw"]["generations"]["caption"]["text"]
        for key in ("prompt_tokens", "new_tokens"):
            assert one["raw"]["generations"]["caption"][key] == batched["raw"]["generations"]["caption"][key]
        assert one["raw"]["tiling"] == batched["raw"]["tiling"]


def test_ask_both_and_the_prompt_reaches_the_model(run_model, tiny: Path, facts: dict) -> None:
    path = SAMPLES / "rocket.jpg"
    base = "Describe this photo."
    longer = base + " Mention the light, the colours and every object in it."
    _, [both] = run_model(MODEL, [path], weights=tiny, ask="both", prompt=base, **SHORT)
    _, [long_cell] = run_model(MODEL, [path], weights=tiny, prompt=longer, **SHORT)
    _check_cell(both, path, facts, tasks=("caption", "tags"))
    _check_cell(long_cell, path, facts)
    # model.toml's CPU default: one 448 px view (here a 64 px tile)
    assert both["raw"]["tiling"] == {"crop_to_patches": False, "max_patches": DEFAULT_MAX_PATCHES["cpu"], "tiles": 1}
    gens = both["raw"]["generations"]
    assert gens["caption"]["prompt"] == base and gens["tags"]["prompt"].startswith("List 15 to 30 short tags")
    assert gens["caption"]["text"] != gens["tags"]["text"]
    # the same image with a longer question: only the text part of the prompt grows
    assert long_cell["raw"]["generations"]["caption"]["prompt_tokens"] > gens["caption"]["prompt_tokens"]
    assert long_cell["raw"]["tiling"] == both["raw"]["tiling"]


@pytest.mark.parametrize(
    ("options", "named"), [({"max_patches": 0}, "max_patches"), ({"crop_to_patches": "no"}, "crop_to_patches")]
)
def test_invalid_option_is_an_error_cell(run_model, tiny: Path, options: dict, named: str) -> None:
    _, [cell] = run_model(MODEL, [SAMPLES / "coffee.png"], weights=tiny, **options)
    assert cell["status"] == "error"
    assert f"option {named}" in cell["message"]


def test_a_remote_code_checkout_is_refused_with_the_fix(run_model, tiny: Path, tmp_path: Path) -> None:
    remote = tmp_path / "InternVL3-8B"
    remote.mkdir()
    (remote / "config.json").write_text(
        json.dumps(
            {
                "model_type": "internvl_chat",
                "architectures": ["InternVLChatModel"],
                "auto_map": {"AutoModel": "modeling_internvl_chat.InternVLChatModel"},
            }
        )
    )
    with pytest.raises(RemoteError, match=r"remote-code InternVL checkpoint .*OpenGVLab/InternVL3-8B-hf"):
        run_model(MODEL, [SAMPLES / "coffee.png"], weights=remote)
