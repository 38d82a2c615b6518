"""The florence2 adapter end to end: a tiny random Florence-2 through the real runner host.

The text of a random model means nothing, so the end-to-end tests check structure and invariants
(statuses, parses, token counts, options, batch order). The decisions made on the text (what
counts as a usable caption, how <OD> labels become scored tags) are pure functions, tested in
the modern env on known inputs, including a real Florence2Processor parse.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.paths import PROJECT_ROOT
from schemas.status import SUCCESS
from tests.adapters.vlm_cells import rgba_image

pytestmark = pytest.mark.adapter

SAMPLES = PROJECT_ROOT / "samples"
# Short generations: the structure is the same at 6 tokens as at 512, and 2 cores are slow.
SHORT = {"max_new_tokens": 6, "od_max_new_tokens": 6, "num_beams": 2}
TAG_FIELDS = {"name", "score", "category", "estimated"}


@pytest.fixture(scope="module")
def tiny(tiny_model: Callable[[str], Path]) -> Path:
    return tiny_model("florence2")


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


def test_min_new_tokens_and_batch_order(run_model, tiny: Path) -> None:
    paths = [SAMPLES / "chelsea.png", SAMPLES / "rocket.jpg"]
    options = {**SHORT, "max_new_tokens": 7, "min_new_tokens": 5}
    _, forward = run_model("florence2", paths, weights=tiny, **options)
    _, backward = run_model("florence2", paths[::-1], weights=tiny, **options)
    assert len(forward) == len(backward) == 2
    for cell, path in zip(forward, paths, strict=True):
        _check_cell(cell, path)
        # EOS is held back for 5 tokens, then allowed again
        assert 5 <= cell["raw"]["new_tokens"] <= 7 and 5 <= cell["raw"]["od_new_tokens"] <= 6
    texts = [c["raw"]["caption_text"] for c in forward]
    assert texts[0] != texts[1]  # distinct outputs, or the order check is void
    assert [c["raw"] for c in backward[::-1]] == [c["raw"] for c in forward]
    assert [c["image"]["width"] for c in forward] == [Image.open(p).width for p in paths]


def test_exact_token_counts_and_options(run_model, tiny: Path) -> None:
    path = SAMPLES / "rocket.jpg"
    _, [cell] = run_model("florence2", [path], weights=tiny, caption_task="<CAPTION>", od=False,
                          max_new_tokens=4, min_new_tokens=4, num_beams=1)
    _check_cell(cell, path, caption_task="<CAPTION>", od=False)
    assert cell["raw"]["new_tokens"] == 4
    if cell["status"] == "no_tags":
        assert "<OD> off" in cell["message"]


def test_invalid_option_is_an_error_cell(run_model, tiny: Path) -> None:
    _, [cell] = run_model("florence2", [SAMPLES / "coffee.png"], weights=tiny, caption_task="<BOGUS>")
    assert cell["status"] == "error"
    assert "caption_task" in cell["message"]


PURE_CHECK = """
import json, random
from runners._text import looks_degenerate
from runners.florence2 import build_result, generation_settings, od_tags

rng = random.Random(0)
captions = {
    "good": "The image shows an abandoned factory hall with broken windows and peeling paint on the walls.",
    "empty": "   ",
    "markup": "<loc_12><loc_40><pad>",
    "stutter": "very very good",
    "loop": "a room " * 6,
    "mostly_loop": "A hallway with doors. " + "and the door " * 5,
    "tail_loop": ("A large hall of a disused power plant with rusty turbines, a control panel, cables on "
                  "the floor, a broken skylight and pigeons nesting in the rafters above the machines "
                  "while the light falls through ") + "the broken window " * 4,
    "low_diversity": " ".join(rng.choice(["rust", "dust", "door", "wall"]) for _ in range(40)),
}
degenerate = {k: looks_degenerate(v) for k, v in captions.items()}
od = {"bboxes": [[0, 0, 50, 50], [0, 0, 100, 100], [10, 10, 20, 20], [5, 5, 5, 5], [0, 0, 1, 1], [0, 0, 9, 9],
                 [0, 0, 99, 99]],
      "labels": ["window", "window", " door ", "\\x00\\x00", "chair", "loc_548>", "2"]}
counts = {"new_tokens": 9, "prompt_tokens": 30, "od_new_tokens": 5, "od_prompt_tokens": 28}
results = {
    "ok": build_result("<CAPTION>", f"</s><s>{captions['good']}</s>", captions["good"], "", od, (100, 100), counts),
    "withheld": build_result("<CAPTION>", "</s>x", captions["loop"], "", od, (100, 100), counts),
    "nothing": build_result("<CAPTION>", "</s></s>", "", "</s></s>", {"bboxes": [], "labels": []}, (100, 100), counts),
    "od_off": build_result("<CAPTION>", "</s></s>", "", None, None, (100, 100), counts),
}
settings = generation_settings({"min_new_tokens": 3, "num_beams": 1, "max_new_tokens": 9})
longest = generation_settings({"max_new_tokens": 1023, "od_max_new_tokens": 1023}, 1024)
errors = {}
for bad, positions in (({"caption_task": "<OD>"}, None), ({"od": "yes"}, None), ({"num_beams": 0}, None),
                       ({"max_new_tokens": 2.5}, None), ({"min_new_tokens": True}, None),
                       ({"od_max_new_tokens": 1024}, 1024)):
    try:
        generation_settings(bad, positions)
    except ValueError as exc:
        errors[json.dumps(bad)] = str(exc)
print(json.dumps({"degenerate": degenerate, "od_tags": od_tags(od, (100, 200)), "results": results,
                  "defaults": generation_settings({}), "settings": settings, "longest": longest,
                  "errors": errors}))
"""


@pytest.fixture(scope="module")
def pure(env_script: Callable[..., dict]) -> dict:
    return env_script("modern", PURE_CHECK)


def test_degenerate_captions_are_recognised(pure: dict) -> None:
    d = pure["degenerate"]
    assert d["good"] is None and d["stutter"] is None
    assert d["empty"] == "empty caption"
    assert "no words" in d["markup"]
    assert "'a room' repeated 6 times" in d["loop"]
    assert "'and the door' repeated 5 times" in d["mostly_loop"]
    assert "ends in a loop" in d["tail_loop"] and "'the broken window' repeated 4 times" in d["tail_loop"]
    assert "distinct words" in d["low_diversity"]


def test_od_labels_become_estimated_tags(pure: dict) -> None:
    # image 100x200: window's largest box 100x100 = 0.5 -> 0.75; door 10x10 -> 0.5025;
    # the 1-pixel box floors at 0.5; labels without letters or with markup left in are dropped
    assert pure["od_tags"] == [
        {"name": "window", "score": 0.75, "category": "od", "estimated": True},
        {"name": "door", "score": 0.5025, "category": "od", "estimated": True},
        {"name": "chair", "score": 0.5, "category": "od", "estimated": True},
    ]


def test_result_status_follows_the_caption_and_labels(pure: dict) -> None:
    ok, withheld, nothing, od_off = (pure["results"][k] for k in ("ok", "withheld", "nothing", "od_off"))
    assert ok["status"] == "ok" and ok["caption"].startswith("The image shows") and "message" not in ok
    assert ok["raw"]["caption_text"].startswith("</s><s>The image") and ok["raw"]["new_tokens"] == 9
    assert [t["name"] for t in ok["tags"]] == ["window", "door", "chair"]
    # a looping caption is never passed on, but the <OD> labels still are
    assert withheld["status"] == "ok" and withheld["caption"] is None and withheld["tags"]
    assert "caption withheld (repetitive caption" in withheld["message"]
    assert nothing["status"] == "no_tags" and nothing["tags"] == [] and nothing["caption"] is None
    assert nothing["message"].startswith("empty caption") and nothing["raw"]["caption_text"] == "</s></s>"
    assert od_off["status"] == "no_tags" and "<OD> off" in od_off["message"] and od_off["raw"]["od"] is None


def test_generation_settings(pure: dict) -> None:
    task, od, caption, od_kwargs = pure["defaults"]
    assert task == "<MORE_DETAILED_CAPTION>" and od is True
    assert caption == {"num_beams": 3, "do_sample": False, "max_new_tokens": 512}
    assert od_kwargs == {"num_beams": 3, "do_sample": False, "max_new_tokens": 512}
    _, _, caption, od_kwargs = pure["settings"]
    assert caption == {"num_beams": 1, "do_sample": False, "min_new_tokens": 3, "max_new_tokens": 9}
    assert od_kwargs["min_new_tokens"] == 3 and od_kwargs["max_new_tokens"] == 512
    assert [pure["longest"][2]["max_new_tokens"], pure["longest"][3]["max_new_tokens"]] == [1023, 1023]
    assert len(pure["errors"]) == 6
    assert "caption_task must be one of" in pure["errors"]['{"caption_task": "<OD>"}']
    assert "od_max_new_tokens=1024 exceeds this model's limit of 1023" in pure["errors"]['{"od_max_new_tokens": 1024}']


PARSE_CHECK = """
import json, sys
from transformers import AutoProcessor
from runners.florence2 import OD_TASK, build_result, od_tags

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
