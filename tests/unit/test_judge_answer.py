"""The decisions made on a judge's answer (runners/_merge.py) and its input (orchestrator/run/judge.py):
format parsing, dropping tags no model mentioned, the context taken from the other models' cells.

Pure functions on known answers; the judge end to end is tests/adapters/test_judge.py.
"""

from __future__ import annotations

from orchestrator.document import Cell
from orchestrator.run.judge import judge_context
from runners._merge import evidence, format_outputs, merged_result, parse_answer, split_supported
from schemas.protocol import Tag
from tests.support import JUDGE_CONTEXT


def test_answer_format_is_parsed() -> None:
    assert parse_answer("DESCRIPTION: A hall.\nTAGS: hall, rust") == ("A hall.", "hall, rust")
    assert parse_answer("**Description:** A hall.\n**Tags:** hall") == ("A hall.", "hall")
    assert parse_answer("just text") == (None, None)
    assert parse_answer("TAGS: a, b") == (None, "a, b")


def test_tags_no_model_mentioned_are_dropped() -> None:
    seen = evidence(JUDGE_CONTEXT)
    assert {"corridor", "window", "paint", "hallway", "rust"} <= seen  # plural "windows" -> "window"
    tags: list[Tag] = [{"name": n, "score": 0.9} for n in ("broken window", "hallways", "chandelier", "peeling_paint")]
    kept, invented = split_supported(tags, seen)
    assert [t["name"] for t in kept] == ["broken window", "hallways", "peeling_paint"]
    assert invented == ["chandelier"]


def test_result_from_a_well_formed_answer() -> None:
    run = {
        "prompt": "p",
        "text": "DESCRIPTION: A dark corridor with peeling paint.\nTAGS: corridor, rust, chandelier",
        "prompt_tokens": 80,
        "new_tokens": 20,
        "seconds": 1.0,
        "tokens_per_s": 20.0,
    }
    result = merged_result(JUDGE_CONTEXT, "system", run)
    assert result["status"] == "ok" and result["caption"] == "A dark corridor with peeling paint."
    assert [t["name"] for t in result["tags"]] == ["corridor", "rust"]
    assert all(t["category"] == "judge" and t["estimated"] for t in result["tags"])
    assert result["raw"]["unsupported_tags"] == ["chandelier"] and "dropped 1 tag" in result["message"]
    looping = merged_result(JUDGE_CONTEXT, "system", dict(run, text="DESCRIPTION: " + "rust and rust " * 8))
    assert looping["status"] == "no_tags" and "repetitive" in looping["message"]


def test_context_takes_ok_cells_in_model_order() -> None:
    cells: dict[str, Cell] = {
        "wd14": {
            "status": "ok",
            "tags": [
                {"name": "general", "score": 0.9, "category": "rating"},
                {"name": "rust", "score": 0.4},
                {"name": "door", "score": 0.8},
            ],
        },
        "clip": {"status": "timeout"},
        "florence2": {"status": "ok", "caption": "A door.", "tags": []},
        "blip": {"status": "ok", "caption": None, "tags": []},
    }
    kinds = {"florence2": "captioner", "wd14": "tagger", "clip": "zero-shot", "blip": "captioner", "j": "judge"}
    assert judge_context(cells, kinds) == {
        "outputs": [
            {"model": "florence2", "kind": "captioner", "caption": "A door.", "tags": []},
            {"model": "wd14", "kind": "tagger", "caption": None, "tags": ["door", "rust"]},
        ]
    }
    assert "[wd14, tagger]\ntags: door" in format_outputs(judge_context(cells, kinds), max_tags=1)
