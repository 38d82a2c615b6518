"""The blip adapter end to end: a tiny random BLIP captioner through the real runner host.

A random model's text means nothing, so these tests check structure and invariants: statuses,
exact token counts (the prefix is not counted as generated), the prefix reaching the model,
options reaching generate(), a prefix in a batch, and ask=tags refused
with the fix named. One check runs the adapter in-process in the modern env and compares it with
a plain model.generate() call: the text is exactly the decoded new tokens, after [DEC] + prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.adapters.vlm_cells import check_cell, rgba_image
from tests.support import SAMPLES

pytestmark = pytest.mark.adapter

PREFIX = "a picture of"  # three whole words in the tiny vocabulary
PREFIX_TOKENS = 3


def _check_cell(cell: dict, path: Path, prompt: str, batch_size: int, max_new: int) -> None:
    raw = check_cell(cell, path, {"caption": prompt}, max_new=max_new, batch_size=batch_size, hidden=("[DEC]", "[SEP]"))
    # [DEC] + the prefix; the image is cross-attended, not counted
    assert raw["generations"]["caption"]["prompt_tokens"] == {"": 1, PREFIX: 1 + PREFIX_TOKENS}[prompt]
    assert cell["tags"] == []  # BLIP has no tags prompt; the orchestrator's caption tags come later
    if cell["status"] == "no_tags":  # an ok caption is the continuation only, never the prefix + it
        assert cell["message"].startswith("caption:")


def test_unconditional_caption_with_the_model_toml_defaults(run_model, tiny: Path, tmp_path: Path) -> None:
    paths = [SAMPLES / "chelsea.png", rgba_image(tmp_path)]
    load, cells = run_model("blip", paths, weights=tiny, max_new_tokens=6)
    assert load["device"] == "cpu" and load["dtype"] == "float32"  # model.toml [load] dtype for cpu
    assert str(tiny) in load["model_version"] and "weights" in load["model_version"]
    assert any("caption prefix" in note for note in load["notes"])
    assert any("no tags prompt" in note for note in load["notes"])
    assert any("--batch-size" in note for note in load["notes"])  # batching on
    assert [c["id"] for c in cells] == ["img0", "img1"]
    for cell, path in zip(cells, paths, strict=True):
        _check_cell(cell, path, "", batch_size=2, max_new=6)
        generate = cell["raw"]["generate"]
        assert generate["num_beams"] == 3 and generate["no_repeat_ngram_size"] == 3  # model.toml reaches generate()


def test_prefix_and_exact_lengths(run_model, tiny: Path) -> None:
    """A caption prefix in a batch (batch == one by one without it: tests/adapters/test_contract.py)."""
    paths = [SAMPLES / "rocket.jpg", SAMPLES / "coffee.png"]
    options = {"prompt": PREFIX, "max_new_tokens": 5, "min_new_tokens": 5, "num_beams": 1}
    _, batch = run_model("blip", paths, weights=tiny, **options)
    for cell, path in zip(batch, paths, strict=True):
        _check_cell(cell, path, PREFIX, batch_size=2, max_new=5)
        assert cell["raw"]["generations"]["caption"]["new_tokens"] == 5  # the prefix is not counted
    texts = [c["raw"]["generations"]["caption"]["text"] for c in batch]
    assert texts[0] != texts[1]  # the output depends on the image
    # the prefix reaches the decoder: [DEC] + its 3 tokens (without a prefix, [DEC] alone: see the test above)
    assert [c["raw"]["generations"]["caption"]["prompt_tokens"] for c in batch] == [1 + PREFIX_TOKENS] * 2


def test_tags_are_refused_with_the_fix_named(run_model, tiny: Path) -> None:
    """--ask applies to every captioner: BLIP's error cell says how to keep it on captions."""
    _, [cell] = run_model("blip", [SAMPLES / "brick.png"], weights=tiny, ask="both", tags_prompt="list the objects")
    assert cell["status"] == "error"
    assert "cannot answer a tags prompt" in cell["message"] and "--option blip.ask=caption" in cell["message"]


IN_PROCESS = """
import json, sys
import torch
from PIL import Image
from transformers import AutoProcessor, BlipForConditionalGeneration
from runners._images import DecodedImage
from runners._vlm import prompts_to_run
from runners.adapters.blip import Adapter

folder = sys.argv[1]
spec = {"name": "blip", "hub_id": "x/y", "revision": "main", "local_path": folder, "offline": True, "device": "cpu",
        "dtype": "float32", "cache_dir": "", "options": {}}
adapter = Adapter()
adapter.load(spec)
images = [Image.open(f"samples/{n}").convert("RGB") for n in ("chelsea.png", "rocket.jpg", "coffee.png")]
decoded = [DecodedImage(f"img{i}", f"i{i}", im) for i, im in enumerate(images)]
model = BlipForConditionalGeneration.from_pretrained(folder).eval()
processor = AutoProcessor.from_pretrained(folder)
runs = {}
for prefix in sys.argv[2:]:
    results = adapter.infer(decoded, {"prompt": prefix, "max_new_tokens": 12, "num_beams": 1})
    plain = []
    for image in images:  # the model card's recipe, one image at a time
        inputs = processor(images=image, text=prefix, return_tensors="pt")
        with torch.no_grad():
            full = model.generate(**inputs, max_new_tokens=12, num_beams=1, do_sample=False)[0].tolist()
        plain.append({"full": full, "input_ids": inputs["input_ids"][0].tolist()})
    runs[prefix] = {"results": results, "plain": plain,
                    "decoded": [processor.decode(p["full"][len(p["input_ids"]) - 1:], skip_special_tokens=True)
                                for p in plain]}
errors = {}
bad = {"tags": {"ask": "tags", "tags_prompt": "x"}, "ask": {"ask": "all"}, "prompt": {"prompt": None}}
for name, opts in bad.items():
    try:
        adapter.prompts(opts)
    except ValueError as exc:
        errors[name] = str(exc)
print(json.dumps({"runs": runs, "bos": processor.tokenizer.bos_token_id, "sep": processor.tokenizer.sep_token_id,
                  "errors": errors,
                  "prompts": {"empty": adapter.prompts({"prompt": "  "}), "absent": adapter.prompts({}),
                              "both": prompts_to_run({"ask": "both", "prompt": "", "tags_prompt": " t "},
                                                     allow_empty=True)}}))
"""


def test_text_is_exactly_the_new_tokens(env_script: Callable[..., dict], tiny: Path) -> None:
    """In the modern env: the adapter (a batch of 3) against the card's recipe (one image at a time).

    The tiny model ends some captions early (tests/tiny/blip.py, SEP_SCALE): the batch then pads the
    rows that ended, and the padding must not count as generated.
    """
    out = env_script("modern", IN_PROCESS, str(tiny), "", PREFIX)
    ended = 0
    for prefix, got in out["runs"].items():
        for result, plain, decoded in zip(got["results"], got["plain"], got["decoded"], strict=True):
            run = result["raw"]["generations"]["caption"]
            prompt_ids = plain["input_ids"][1:-1]  # the processor's [CLS] prefix [SEP], less [CLS] and [SEP]
            assert len(prompt_ids) == (PREFIX_TOKENS if prefix else 0)
            assert plain["full"][: 1 + len(prompt_ids)] == [out["bos"], *prompt_ids]  # generate() echoes [DEC] + prefix
            new = plain["full"][1 + len(prompt_ids) :]
            if out["sep"] in new:  # a finished caption: its [SEP] counts as generated, nothing after it
                new = new[: new.index(out["sep"]) + 1]
                ended += 1
            assert run["new_tokens"] == len(new) and run["prompt_tokens"] == 1 + len(prompt_ids)
            assert run["text"] == decoded  # exactly the decoded new tokens, never the prefix
            assert run["prompt"] == prefix
    assert 0 < ended < 6  # rows of different lengths in a batch, or the padding path went untested
    assert out["prompts"]["empty"] == out["prompts"]["absent"] == {"caption": ""}
    assert out["prompts"]["both"] == {"caption": "", "tags": "t"}
    assert "ask='tags' has no meaning" in out["errors"]["tags"]
    assert "option ask must be one of" in out["errors"]["ask"]
    assert "option prompt must be a string" in out["errors"]["prompt"]
