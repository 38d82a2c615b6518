"""The florence2 adapter end to end: a tiny random Florence-2 through the real runner host.

The text of a random model means nothing, so the end-to-end tests check structure and invariants
(statuses, parses, token counts, options; order and batches: tests/adapters/test_contract.py). The
decisions made on the text (what counts as a usable caption, how <OD> labels become scored tags) are
pure functions, tested on known inputs in tests/unit/test_florence2_text.py; a real
Florence2Processor parse is tested here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from schemas.status import SUCCESS
from tests.adapters.vlm_cells import rgba_image
from tests.support import SAMPLES

pytestmark = pytest.mark.adapter

# Short generations: the structure is the same at 6 tokens as at 512, and 2 cores are slow.
SHORT = {"max_new_tokens": 6, "od_max_new_tokens": 6, "num_beams": 2}
TAG_FIELDS = {"name", "score", "category", "estimated"}


def _check_cell(cell: dict, path: Path, caption_task: str = "<MORE_DETAILED_CAPTION>", od: bool = True) -> None:
    width, height = Image.open(path).size
    assert cell["status"] in SUCCESS, cell.get("message")
    assert cell["image"]["width"] == width and cell["image"]["height"] == height
    raw = cell["raw"]
    assert isinstance(raw["caption_text"], str) and raw["caption_task"] == caption_task
    assert isinstance(raw["prompt_tokens"], int) and raw["prompt_tokens"] > 0
    assert isinstance(raw["new_tokens"], int) and raw["new_tokens"] >= 1

    parsed = raw["caption_text"].replace("<s>", "").replace("</s>", "").strip()
    if cell["caption"] is not None:  # a caption is passed on exactly as parsed
        assert cell["caption"] == parsed and cell["caption"]
    else:
        assert "caption" in cell["message"] or cell["status"] == "no_tags"

    if od:
        assert isinstance(raw["od_text"], str) and isinstance(raw["od_new_tokens"], int)
        boxes, labels = raw["od"]["bboxes"], raw["od"]["labels"]
        assert isinstance(boxes, list) and isinstance(labels, list) and len(boxes) == len(labels)
        for box in boxes:  # dequantised into this image's pixels
            assert len(box) == 4
            assert all(0 <= x <= width for x in box[0::2]) and all(0 <= y <= height for y in box[1::2])
    else:
        assert raw["od"] is None and raw["od_text"] is None and raw["od_new_tokens"] is None
        assert cell["tags"] == []

    tags = cell["tags"]
    for tag in tags:
        assert set(tag) == TAG_FIELDS
        assert tag["category"] == "od" and tag["estimated"] is True
        assert isinstance(tag["name"], str)
        assert tag["name"] in {" ".join(label.split()) for label in raw["od"]["labels"]}
        assert any(ch.isalpha() for ch in tag["name"]) and not {"<", ">"} & set(tag["name"])
        assert isinstance(tag["score"], float) and 0.5 <= tag["score"] <= 1.0
    assert len({t["name"] for t in tags}) == len(tags)
    assert [t["score"] for t in tags] == sorted((t["score"] for t in tags), reverse=True)

    if cell["status"] == "no_tags":
        assert cell["message"] and cell["caption"] is None and tags == []
    else:
        assert cell["caption"] or tags


def test_load_and_generations_that_end_at_once(run_model, tiny: Path, tmp_path: Path) -> None:
    """The tiny model emits EOS first (tests/tiny/florence2.py): an empty caption, never passed on."""
    paths = [SAMPLES / "chelsea.png", rgba_image(tmp_path)]
    load, cells = run_model("florence2", paths, weights=tiny, **SHORT)
    assert load["device"] == "cpu" and load["dtype"] == "float32"
    assert str(tiny) in load["model_version"] and "model.safetensors" in load["model_version"]
    assert any("estimates" in note for note in load["notes"])
    assert [c["id"] for c in cells] == ["img0", "img1"]
    for cell, path in zip(cells, paths, strict=True):
        _check_cell(cell, path)
        assert cell["raw"]["new_tokens"] == 1 and cell["raw"]["od_new_tokens"] == 1  # EOS only
        assert cell["status"] == "no_tags" and cell["message"].startswith("empty caption")
        assert cell["raw"]["od"] == {"bboxes": [], "labels": []}


def test_min_new_tokens(run_model, tiny: Path) -> None:
    """(Order and batch == one by one: tests/adapters/test_contract.py.)"""
    paths = [SAMPLES / "chelsea.png", SAMPLES / "rocket.jpg"]
    options = {**SHORT, "max_new_tokens": 7, "min_new_tokens": 5}
    _, cells = run_model("florence2", paths, weights=tiny, **options)
    for cell, path in zip(cells, paths, strict=True):
        _check_cell(cell, path)
        # EOS is held back for 5 tokens, then allowed again
        assert 5 <= cell["raw"]["new_tokens"] <= 7 and 5 <= cell["raw"]["od_new_tokens"] <= 6
    texts = [c["raw"]["caption_text"] for c in cells]
    assert texts[0] != texts[1]  # the output depends on the image


def test_exact_token_counts_and_options(run_model, tiny: Path) -> None:
    path = SAMPLES / "rocket.jpg"
    _, [cell] = run_model(
        "florence2",
        [path],
        weights=tiny,
        caption_task="<CAPTION>",
        od=False,
        max_new_tokens=4,
        min_new_tokens=4,
        num_beams=1,
    )
    _check_cell(cell, path, caption_task="<CAPTION>", od=False)
    assert cell["raw"]["new_tokens"] == 4
    if cell["status"] == "no_tags":
        assert "<OD> off" in cell["message"]


PARSE_CHECK = """
import json, sys
from transformers import AutoProcessor
from runners.adapters.florence2 import OD_TASK, task_outputs_result, od_tags

processor = AutoProcessor.from_pretrained(sys.argv[1])
text = ("</s><s>window<loc_0><loc_0><loc_499><loc_999>door<loc_600><loc_100><loc_700><loc_300>"
        "window<loc_10><loc_10><loc_20><loc_20></s>")
od = processor.post_process_generation(text, task=OD_TASK, image_size=(200, 100))[OD_TASK]
caption = processor.post_process_generation("</s><s>An abandoned hall.</s>", task="<CAPTION>", image_size=(200, 100))
print(json.dumps({"od": od, "tags": od_tags(od, (200, 100)), "caption": caption}))
"""


def test_real_processor_parse_feeds_the_tags(env_script: Callable[..., dict], tiny: Path) -> None:
    out = env_script("modern", PARSE_CHECK, str(tiny))
    assert out["od"]["labels"] == ["window", "door", "window"]
    assert out["od"]["bboxes"][0] == [0, 0, 99, 99]  # bin centres of 1000 bins, in pixels of 200x100
    assert out["caption"] == {"<CAPTION>": "An abandoned hall."}
    # window: largest box 99x99 of 200x100 -> 0.5 + 0.5 * 0.49005; door: 20x20 -> 0.5 + 0.5 * 0.02
    assert [(t["name"], t["score"]) for t in out["tags"]] == [("window", 0.745), ("door", 0.51)]
