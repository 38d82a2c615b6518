"""Florence-2's decisions on its text (runners/adapters/florence2.py, runners/_text.py), pure functions on known
inputs: what counts as a usable caption, how <OD> labels become scored tags, the generation settings.

No model, no env: the end-to-end tests and a real Florence2Processor parse are
tests/adapters/test_florence2.py.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from runners._text import looks_degenerate
from runners.adapters.florence2 import generation_settings, od_tags, task_outputs_result


def _pure() -> dict[str, Any]:
    rng = random.Random(0)
    captions = {
        "good": "The image shows an abandoned factory hall with broken windows and peeling paint on the walls.",
        "empty": "   ",
        "markup": "<loc_12><loc_40><pad>",
        "stutter": "very very good",
        "loop": "a room " * 6,
        "mostly_loop": "A hallway with doors. " + "and the door " * 5,
        "tail_loop": (
            "A large hall of a disused power plant with rusty turbines, a control panel, cables on "
            "the floor, a broken skylight and pigeons nesting in the rafters above the machines "
            "while the light falls through "
        )
        + "the broken window " * 4,
        "low_diversity": " ".join(rng.choice(["rust", "dust", "door", "wall"]) for _ in range(40)),
    }
    degenerate = {k: looks_degenerate(v) for k, v in captions.items()}
    od = {
        "bboxes": [
            [0, 0, 50, 50],
            [0, 0, 100, 100],
            [10, 10, 20, 20],
            [5, 5, 5, 5],
            [0, 0, 1, 1],
            [0, 0, 9, 9],
            [0, 0, 99, 99],
        ],
        "labels": ["window", "window", " door ", "\x00\x00", "chair", "loc_548>", "2"],
    }
    counts: dict[str, int | None] = {"new_tokens": 9, "prompt_tokens": 30, "od_new_tokens": 5, "od_prompt_tokens": 28}
    results = {
        "ok": task_outputs_result(
            "<CAPTION>", f"</s><s>{captions['good']}</s>", captions["good"], "", od, (100, 100), counts
        ),
        "withheld": task_outputs_result("<CAPTION>", "</s>x", captions["loop"], "", od, (100, 100), counts),
        "nothing": task_outputs_result(
            "<CAPTION>", "</s></s>", "", "</s></s>", {"bboxes": [], "labels": []}, (100, 100), counts
        ),
        "od_off": task_outputs_result("<CAPTION>", "</s></s>", "", None, None, (100, 100), counts),
    }
    settings = generation_settings({"min_new_tokens": 3, "num_beams": 1, "max_new_tokens": 9})
    longest = generation_settings({"max_new_tokens": 1023, "od_max_new_tokens": 1023}, 1024)
    errors = {}
    for bad, positions in (
        ({"caption_task": "<OD>"}, None),
        ({"od": "yes"}, None),
        ({"num_beams": 0}, None),
        ({"max_new_tokens": 2.5}, None),
        ({"min_new_tokens": True}, None),
        ({"od_max_new_tokens": 1024}, 1024),
    ):
        try:
            generation_settings(bad, positions)
        except ValueError as exc:
            errors[json.dumps(bad)] = str(exc)
    return {
        "degenerate": degenerate,
        "od_tags": od_tags(od, (100, 200)),
        "results": results,
        "defaults": generation_settings({}),
        "settings": settings,
        "longest": longest,
        "errors": errors,
    }


@pytest.fixture(scope="module")
def pure() -> dict[str, Any]:
    """The decisions through JSON, as a runner's reply carries them (tuples become lists)."""
    result: dict[str, Any] = json.loads(json.dumps(_pure()))
    return result


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
