"""The blip2 adapter end to end: tiny random BLIP-2s through the real runner host.

Two registry models share runners/adapters/blip2.py: `blip2` (OPT decoder, decoder-only) and `blip2-flan`
(Flan-T5 encoder-decoder); tests/tiny/blip2.py builds one tiny model of each. A random model's
text means nothing, so these tests check structure and invariants: statuses, exact token counts
(neither the prompt nor T5's decoder start token counted as generated), the prompt and the query
tokens reaching the model, the VQA template (batch == one by one: tests/adapters/test_contract.py). One check
runs the adapter in-process in the modern env: against plain model.generate(), and on copies of
the tiny model with the processor pitfalls of older BLIP-2 repos.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.adapters.vlm_cells import check_cell, rgba_image, runs
from tests.support import SAMPLES

pytestmark = pytest.mark.adapter

FLOAT32 = {"dtype": {"cpu": "float32"}}
TAGS_PROMPT = "Question: What objects and materials are in this photo? List them separated by commas. Answer:"


def _check_cell(
    cell: dict, path: Path, prompts: dict[str, str], batch_size: int, max_new: int, query_tokens: int
) -> None:
    # prompts: the text the model was given, after qa_template; the prompt tokens hold the query
    # tokens + a bos or eos at least: the image is in the prompt
    check_cell(
        cell,
        path,
        prompts,
        max_new=max_new,
        batch_size=batch_size,
        min_prompt_tokens=query_tokens + 1,
        hidden=("<image>",),
    )


def test_opt_unconditional_caption_with_the_model_toml_defaults(
    run_model, tiny: Path, facts: dict, tmp_path: Path
) -> None:
    paths = [SAMPLES / "chelsea.png", rgba_image(tmp_path)]
    load, cells = run_model("blip2", paths, weights=tiny / "opt", max_new_tokens=6)
    assert load["device"] == "cpu" and load["dtype"] == "bfloat16"  # model.toml [load] dtype for cpu
    assert str(tiny / "opt") in load["model_version"] and "weights" in load["model_version"]
    assert any("opt language model (decoder-only)" in note for note in load["notes"])
    assert any("left padding" in note for note in load["notes"])
    assert not any("num_query_tokens" in note for note in load["notes"])  # the tiny processor has it
    assert [c["id"] for c in cells] == ["img0", "img1"]
    for cell, path in zip(cells, paths, strict=True):
        _check_cell(cell, path, {"caption": ""}, 2, 6, facts["query_tokens"])  # "" = unconditional, not templated
        assert cell["raw"]["generations"]["caption"]["prompt_tokens"] == facts["query_tokens"] + 1  # + OPT's bos </s>
        assert cell["raw"]["generate"]["no_repeat_ngram_size"] == 3  # the model.toml guard reaches generate()


def test_flan_t5_exact_lengths(run_model, tiny: Path, facts: dict) -> None:
    """Flan-T5 (encoder-decoder) in float32 (batch == one by one: tests/adapters/test_contract.py)."""
    paths = [SAMPLES / "rocket.jpg", SAMPLES / "coffee.png"]
    options = {"max_new_tokens": 5, "min_new_tokens": 5}
    load, batch = run_model("blip2-flan", paths, weights=tiny / "flan-t5", load_options=FLOAT32, **options)
    assert load["dtype"] == "float32" and any("t5 language model (encoder-decoder)" in n for n in load["notes"])
    prompt = {"caption": "Question: Describe this photo in detail. Answer:"}  # model.toml's, already in the format
    for cell, path in zip(batch, paths, strict=True):
        _check_cell(cell, path, prompt, 2, 5, facts["query_tokens"])
        assert cell["raw"]["generations"]["caption"]["new_tokens"] == 5  # T5's decoder start token not counted
    texts = runs(batch, "text", "caption")
    assert texts[0] != texts[1]  # the output depends on the image


def test_opt_ask_both_templates_a_bare_question(run_model, tiny: Path, facts: dict) -> None:
    paths = [SAMPLES / "brick.png", SAMPLES / "chelsea.png"]
    options = {"ask": "both", "prompt": "What is in this photo?", "max_new_tokens": 4, "min_new_tokens": 4}
    weights = tiny / "opt"
    _, batch = run_model("blip2", paths, weights=weights, load_options=FLOAT32, **options)
    prompts = {"caption": "Question: What is in this photo? Answer:", "tags": TAGS_PROMPT}
    for cell, path in zip(batch, paths, strict=True):
        _check_cell(cell, path, prompts, 2, 4, facts["query_tokens"])
        gens = cell["raw"]["generations"]
        assert gens["caption"]["new_tokens"] == gens["tags"]["new_tokens"] == 4
        # same image, longer prompt: more prompt tokens; the query tokens are counted in both
        assert gens["tags"]["prompt_tokens"] > gens["caption"]["prompt_tokens"] > facts["query_tokens"] + 1
    for task in ("caption", "tags"):
        texts = runs(batch, "text", task)
        assert texts[0] != texts[1]


def test_invalid_qa_template_is_an_error_cell(run_model, tiny: Path) -> None:
    _, [cell] = run_model("blip2", [SAMPLES / "coffee.png"], weights=tiny / "opt", qa_template="Q: A:")
    assert cell["status"] == "error" and "option qa_template must contain {}" in cell["message"]


IN_PROCESS = """
import json, shutil, sys
from pathlib import Path
import torch
from PIL import Image
from transformers import AutoProcessor, Blip2ForConditionalGeneration
from runners._images import DecodedImage
from runners.adapters.blip2 import Adapter, model_prompt, qa_template

tiny, tmp = Path(sys.argv[1]), Path(sys.argv[2])
images = [Image.open(f"samples/{n}").convert("RGB") for n in ("chelsea.png", "rocket.jpg")]
decoded = [DecodedImage(f"img{i}", f"i{i}", im) for i, im in enumerate(images)]
options = {"prompt": "Question: what is this? Answer:", "max_new_tokens": 6, "num_beams": 1}


def load(folder):
    spec = {"name": "blip2", "hub_id": "x/y", "revision": "main", "local_path": str(folder), "offline": True,
            "device": "cpu", "dtype": "float32", "cache_dir": "", "options": {}}
    adapter = Adapter()
    return adapter, adapter.load(spec)


def copy(variant, name, edit_processor=None, edit_tokenizer=None, edit_config=None):
    folder = tmp / name
    shutil.copytree(tiny / variant, folder)
    for file, edit in (("processor_config.json", edit_processor), ("tokenizer_config.json", edit_tokenizer),
                       ("config.json", edit_config)):
        if edit:
            data = json.loads((folder / file).read_text())
            edit(data)
            (folder / file).write_text(json.dumps(data))
    return folder


out = {"variants": {}}
for variant in ("opt", "flan-t5"):
    adapter, _ = load(tiny / variant)
    results = adapter.infer(decoded, options)
    model = Blip2ForConditionalGeneration.from_pretrained(tiny / variant).eval()
    processor = AutoProcessor.from_pretrained(tiny / variant)
    plain = []
    for image in images:  # the model card's recipe, one image at a time
        inputs = processor(images=image, text=options["prompt"], return_tensors="pt")
        with torch.no_grad():
            full = model.generate(**inputs, max_new_tokens=6, do_sample=False)[0].tolist()
        start = inputs["input_ids"].shape[1] if variant == "opt" else 1
        plain.append({"prompt_ids": inputs["input_ids"][0].tolist(), "full": full, "start": start,
                      "decoded": processor.decode(full[start:], skip_special_tokens=True)})
    out["variants"][variant] = {"results": results, "plain": plain, "eos": model.generation_config.eos_token_id,
                                "image_id": model.config.image_token_id}

# a processor_config.json from before Salesforce's update: no num_query_tokens
stale = copy("opt", "stale", edit_processor=lambda d: d.pop("num_query_tokens"))
adapter, info = load(stale)
out["stale"] = {"notes": info["notes"], "results": adapter.infer(decoded, options)}
# a tokenizer carrying image_token as a string (Blip2Processor then keeps a str, and its __call__ breaks)
named = copy("opt", "named", edit_tokenizer=lambda d: d.update(extra_special_tokens={"image_token": "<image>"}))
processor = AutoProcessor.from_pretrained(named)
adapter, _ = load(named)
out["named"] = {"raw_type": type(processor.image_token).__name__, "results": adapter.infer(decoded, options)}
# config.json's image token is not the tokenizer's <image>
try:
    load(copy("opt", "mismatch", edit_config=lambda d: d.update(image_token_index=3)))
except ValueError as exc:
    out["mismatch"] = str(exc)
errors = {}
for bad in ("no placeholder", "{} and {}", 7):
    try:
        qa_template({"qa_template": bad})
    except ValueError as exc:
        errors[str(bad)] = str(exc)
out["errors"] = errors
t = "Question: {} Answer:"
out["prompts"] = [model_prompt("What is this?", t), model_prompt("  ", t), model_prompt("Question: x? Answer:", t),
                  model_prompt("Question: x? Short answer:", t), model_prompt("a photo of", ""),
                  model_prompt("Describe it.", "{} Answer:"), qa_template({})]
print(json.dumps(out))
"""


def test_in_process_against_generate_and_old_processor_layouts(
    env_script: Callable[..., dict], tiny: Path, facts: dict, tmp_path: Path
) -> None:
    out = env_script("modern", IN_PROCESS, str(tiny), str(tmp_path))
    for variant, got in out["variants"].items():
        for result, plain in zip(got["results"], got["plain"], strict=True):
            run = result["raw"]["generations"]["caption"]
            assert plain["prompt_ids"][: facts["query_tokens"]] == [got["image_id"]] * facts["query_tokens"]
            new = plain["full"][plain["start"] :]
            if got["eos"] in new:  # a finished answer: its EOS counts as generated, nothing after it
                new = new[: new.index(got["eos"]) + 1]
            assert run["new_tokens"] == len(new), variant
            assert run["text"] == plain["decoded"], variant  # exactly the decoded new tokens (batch == single)
            assert run["prompt_tokens"] == len(plain["prompt_ids"]), variant
            if variant == "opt":  # decoder-only: the output repeats the prompt, which is not counted
                assert plain["full"][: plain["start"]] == plain["prompt_ids"]
    reference = out["variants"]["opt"]["results"]
    # the stale processor is given the count from config.json and then behaves exactly like the current one
    assert any(
        "no num_query_tokens" in note and f"took {facts['query_tokens']}" in note for note in out["stale"]["notes"]
    )
    assert [r["raw"]["generations"] for r in out["stale"]["results"]] == [
        {
            **r["raw"]["generations"],
            "caption": {
                **r["raw"]["generations"]["caption"],
                "seconds": s["raw"]["generations"]["caption"]["seconds"],
                "tokens_per_s": s["raw"]["generations"]["caption"]["tokens_per_s"],
            },
        }
        for r, s in zip(reference, out["stale"]["results"], strict=True)
    ]
    assert out["named"]["raw_type"] == "str"  # the pitfall is real in this transformers version...
    assert [r["raw"]["generations"]["caption"]["text"] for r in out["named"]["results"]] == [
        r["raw"]["generations"]["caption"]["text"] for r in reference
    ]  # ...and the adapter gets past it
    assert "image_token_index is 3" in out["mismatch"] and "download the current Salesforce repo" in out["mismatch"]
    assert len(out["errors"]) == 3 and all("must contain {} exactly once" in e for e in out["errors"].values())
    assert out["prompts"] == [
        "Question: What is this? Answer:",
        "",
        "Question: x? Answer:",
        "Question: x? Short answer:",
        "a photo of",
        "Describe it. Answer:",
        "Question: {} Answer:",
    ]
