"""The clip-interrogator adapter end to end: the real clip-interrogator 0.6.0 package on tiny random
BLIP and CLIP models (tests/tiny/clip_interrogator.py) through the runner host, offline: the package
cannot download its precomputed label tables, so it embeds its ~111k phrases with the tiny CLIP (the
first load takes ~10 s with its narrow text tower; the tables are kept in the adapter cache, keyed by the CLIP weights).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import SAMPLES

pytestmark = pytest.mark.adapter


@pytest.fixture(scope="module")
def tables() -> str:
    """Where `mltag analyze` keeps the tables too (the adapter cache): computed once, for every test."""
    from orchestrator.paths import adapter_cache_dir

    return str(adapter_cache_dir() / "clip-interrogator")


def _check(cell: dict, mode: str) -> dict:
    assert cell["status"] == "ok", cell.get("message")
    raw = cell["raw"]
    assert raw["mode"] == mode and raw["prompt"]
    names = [t["name"] for t in cell["tags"]]
    assert sorted(names) == sorted(raw["phrases"]) and len(set(names)) == len(names)
    for tag in cell["tags"]:
        assert tag["name"] in raw["prompt"] and tag["score"] == raw["similarities"][tag["name"]]
        assert -1.0 <= tag["score"] <= 1.0 and tag["category"] == ("negative" if mode == "negative" else "prompt")
    if mode == "negative":
        assert cell["caption"] is None
    elif cell["caption"] is not None:
        assert raw["prompt"].startswith(cell["caption"])
    return raw


def test_best_mode_tables_computed_offline(run_model, tiny: Path, tables: str) -> None:
    paths = [SAMPLES / "chelsea.png", SAMPLES / "rocket.jpg"]
    # best mode's flavour chain runs each of its steps over 2,048 candidates through CLIP's text tower:
    # four steps are the same code as 32, an eighth of the time
    load, cells = run_model(
        "clip-interrogator", paths, weights=tiny, load_options={"tables_dir": tables}, min_flavors=2, max_flavors=4
    )
    assert str(tiny / "caption") in load["model_version"] and str(tiny / "clip") in load["model_version"]
    [note] = [n for n in load["notes"] if "label tables ready" in n]
    folder = Path(note.split("(kept in ")[1].rstrip(")"))
    assert folder.parent == Path(tables) and folder.name.startswith("tables-")
    written = sorted(p.name for p in folder.glob("*.safetensors"))
    assert written == sorted(
        f"ViT-L-14_openai_{t}.safetensors"
        for t in ("artists", "flavors", "mediums", "movements", "trendings", "negative")
    )
    raws = [_check(c, "best") for c in cells]
    assert raws[0]["prompt"] != raws[1]["prompt"]  # the image reaches both models


@pytest.mark.parametrize("mode", ["fast", "classic", "negative"])
def test_other_modes(run_model, tiny: Path, tables: str, mode: str) -> None:
    _, [cell] = run_model(
        "clip-interrogator",
        [SAMPLES / "coffee.png"],
        weights=tiny,
        load_options={"tables_dir": tables},
        mode=mode,
        max_flavors=6,
    )
    raw = _check(cell, mode)
    if mode == "classic":  # caption, medium + artist, trending, movement, 3 flavors
        assert len(raw["phrases"]) <= 6
