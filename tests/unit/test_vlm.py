"""The captioning adapters' shared decisions (runners/_vlm.py), on known texts: no model involved."""

from __future__ import annotations

import pytest

from runners._text import parse_tag_list
from runners._vlm import echoes_prompt, for_device, generate_kwargs, prompt_runs_result, prompts_to_run

PROMPTS = {"prompt": "Describe this photo in detail.", "tags_prompt": "List tags, comma-separated."}


def _run(text: str, prompt: str = "Describe this photo in detail.") -> dict:
    return {"prompt": prompt, "text": text, "prompt_tokens": 40, "new_tokens": 12, "seconds": 0.5, "tokens_per_s": 24.0}


def test_ask_selects_the_prompts() -> None:
    assert prompts_to_run(PROMPTS) == {"caption": PROMPTS["prompt"]}
    assert prompts_to_run({**PROMPTS, "ask": "tags"}) == {"tags": PROMPTS["tags_prompt"]}
    assert list(prompts_to_run({**PROMPTS, "ask": "both"})) == ["caption", "tags"]
    with pytest.raises(ValueError, match="option ask must be one of"):
        prompts_to_run({**PROMPTS, "ask": "all"})
    with pytest.raises(ValueError, match="--tags-prompt"):
        prompts_to_run({"prompt": "x", "ask": "tags"})


def test_generation_is_greedy_and_bounded() -> None:
    assert generate_kwargs({}) == {"do_sample": False, "max_new_tokens": 256, "num_beams": 1}
    kwargs = generate_kwargs(
        {"max_new_tokens": 9, "min_new_tokens": 9, "repetition_penalty": 1.1, "no_repeat_ngram_size": 3, "num_beams": 2}
    )
    assert kwargs == {
        "do_sample": False,
        "max_new_tokens": 9,
        "num_beams": 2,
        "min_new_tokens": 9,
        "repetition_penalty": 1.1,
        "no_repeat_ngram_size": 3,
    }
    assert "no_repeat_ngram_size" not in generate_kwargs({"no_repeat_ngram_size": 0})
    for bad in ({"max_new_tokens": 0}, {"num_beams": True}, {"repetition_penalty": -1}, {"min_new_tokens": 1.5}):
        with pytest.raises(ValueError, match=f"option {next(iter(bad))}"):
            generate_kwargs(bad)


def test_tag_lists_are_parsed_in_order_with_estimated_scores() -> None:
    tags = parse_tag_list(
        'Tags: 1. Broken Windows, "rust";\n- graffiti\n* rust\n3d render, An old sentence that '
        "is far too long to be a tag at all, <loc_1>, 42, decay."
    )
    assert [t["name"] for t in tags] == ["broken windows", "rust", "graffiti", "3d render", "decay"]
    assert [t["score"] for t in tags] == [0.9, 0.82, 0.74, 0.66, 0.58]  # 0.9 - 0.4 * i / 5
    assert all(t["estimated"] and t["category"] == "vlm" for t in tags)
    assert parse_tag_list("") == [] and parse_tag_list(" , ;\n") == []


def test_prompt_echo_is_recognised() -> None:
    assert echoes_prompt("Describe this photo", "Describe this photo in detail.")
    assert echoes_prompt("in detail.", "Describe this photo in detail.")
    assert not echoes_prompt("A photo of a hall.", "Describe this photo in detail.")
    assert not echoes_prompt("", "Describe this photo in detail.")


def test_results_flag_unusable_output() -> None:
    kwargs = {"do_sample": False, "max_new_tokens": 12}
    ok = prompt_runs_result({"caption": _run(" A hall with broken windows and rusty pipes. ")}, kwargs, 2)
    assert ok["status"] == "ok" and ok["caption"] == "A hall with broken windows and rusty pipes."
    assert ok["tags"] == [] and "message" not in ok
    assert ok["raw"]["batch_size"] == 2 and ok["raw"]["generate"] == kwargs
    assert ok["raw"]["generations"]["caption"]["text"] == " A hall with broken windows and rusty pipes. "
    for text, reason in (
        ("", "empty caption"),
        ("Describe this photo", "only repeats the prompt"),
        ("a room " * 8, "repetitive caption"),
    ):
        bad = prompt_runs_result({"caption": _run(text)}, kwargs, 1)
        assert bad["status"] == "no_tags" and bad["caption"] is None and reason in bad["message"]
        assert bad["raw"]["generations"]["caption"]["text"] == text  # the raw output is kept
    both = prompt_runs_result({"caption": _run("a room " * 8), "tags": _run("rust, door", "List tags.")}, kwargs, 1)
    assert both["status"] == "ok" and both["caption"] is None and [t["name"] for t in both["tags"]] == ["rust", "door"]
    assert both["message"].startswith("caption: repetitive caption")
    no_list = prompt_runs_result({"tags": _run("...", "List tags.")}, kwargs, 1)
    assert no_list["status"] == "no_tags" and "tags:" in no_list["message"]


def test_unconditional_captioning_allows_an_empty_prompt() -> None:
    """BLIP and BLIP-2 caption without a prompt; the instruction-following families need one."""
    assert prompts_to_run({}, allow_empty=True) == {"caption": ""}
    assert prompts_to_run({"prompt": "  a photo of "}, allow_empty=True) == {"caption": "a photo of"}
    with pytest.raises(ValueError, match="--prompt"):
        prompts_to_run({"prompt": "  "})
    with pytest.raises(ValueError, match="must be a string"):
        prompts_to_run({"prompt": None}, allow_empty=True)


def test_an_option_per_device() -> None:
    defaults = {"cpu": 1, "cuda": 12, "mps": 6}
    assert for_device({}, "max_patches", "cuda", defaults) == 12
    assert for_device({"max_patches": 4}, "max_patches", "cpu", defaults) == 4
    assert for_device({"max_patches": {"cpu": 2}}, "max_patches", "cpu", defaults) == 2
    assert for_device({"max_patches": {"cpu": 2}}, "max_patches", "mps", defaults) == 6, "missing device: default"
    with pytest.raises(ValueError, match="unknown device.*gpu"):
        for_device({"max_patches": {"gpu": 2}}, "max_patches", "cpu", defaults)
