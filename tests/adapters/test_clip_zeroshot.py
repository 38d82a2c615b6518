"""The clip adapter end to end: a tiny random open_clip CLIP through the real runner host.

Scores of a random model mean nothing, so these tests check structure and invariants: every
vocabulary term scored once, scores derived from the raw logits as the notes say (softmax or
sigmoid), batch order, the on-disk text-embedding cache, and refusal of a folder without weights.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.errors import RemoteError
from orchestrator.models.registry import load_registry
from orchestrator.paths import read_vocabulary
from tests.support import SAMPLES

pytestmark = pytest.mark.adapter


@pytest.fixture(scope="module")
def urbex() -> list[str]:
    return read_vocabulary("urbex", load_registry()["clip"].folder)


def _generated(tmp_path: Path) -> list[Path]:
    """A wide RGBA gradient with transparency and a tall greyscale image: sizes tell them apart."""
    wide = Image.merge(
        "RGBA",
        [
            Image.linear_gradient("L").resize((300, 120)),
            Image.new("L", (300, 120), 90),
            Image.linear_gradient("L").rotate(90).resize((300, 120)),
            Image.linear_gradient("L").resize((300, 120)),
        ],
    )
    tall = Image.radial_gradient("L").resize((100, 260))
    wide.save(tmp_path / "wide.png")
    tall.save(tmp_path / "tall.png")
    return [tmp_path / "wide.png", tmp_path / "tall.png"]


def _cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "adapter-cache" / "text-embeddings").glob("*.safetensors"))


def _softmax(logits: list[float]) -> list[float]:
    top = max(logits)
    exps = [math.exp(x - top) for x in logits]
    return [e / sum(exps) for e in exps]


def _check_tags(cell: dict, terms: list[str]) -> None:
    assert cell["status"] == "ok", cell.get("message")
    tags = cell["tags"]
    assert sorted(t["name"] for t in tags) == sorted(terms)  # every term exactly once
    assert all(t["category"] == "zero-shot" for t in tags)
    scores = [t["score"] for t in tags]
    assert scores == sorted(scores, reverse=True)
    assert list(cell["raw"]["logits"]) == terms  # raw keeps vocabulary order


def _check_softmax(cell: dict, terms: list[str]) -> None:
    _check_tags(cell, terms)
    raw = cell["raw"]
    assert raw["score_mode"] == "softmax"
    assert raw["templates"] == ["a photo of {}"]
    assert sum(t["score"] for t in cell["tags"]) == pytest.approx(1.0, abs=1e-4)
    expected = dict(zip(terms, _softmax([raw["logits"][t] for t in terms]), strict=True))
    for tag in cell["tags"]:
        assert tag["score"] == pytest.approx(expected[tag["name"]], rel=1e-4, abs=1e-7)


def test_softmax_over_urbex_batch_order_and_text_cache(run_model, tiny: Path, urbex: list[str], tmp_path: Path) -> None:
    paths = [SAMPLES / "brick.png", SAMPLES / "rocket.jpg", *_generated(tmp_path)]
    sizes = [Image.open(p).size for p in paths]
    load, cells = run_model("clip", paths, weights=tiny, load_options={"score": "softmax"}, fresh=True)

    assert load["device"] == "cpu" and load["dtype"] == "float32"
    assert str(tiny) in load["model_version"]
    notes = " | ".join(load["notes"])
    assert f"softmax over {len(urbex)} terms" in notes and "not independent" in notes
    assert "QuickGELU" in notes
    assert "text embeddings: computed" in notes and "cache hit" not in notes
    assert len(_cache_files(tmp_path)) == 1
    assert [c["id"] for c in cells] == [f"img{i}" for i in range(len(paths))]
    assert [(c["image"]["width"], c["image"]["height"]) for c in cells] == sizes
    for cell in cells:
        _check_softmax(cell, urbex)
    assert len({tuple(c["raw"]["logits"].values()) for c in cells}) == len(paths)  # images differ

    # Second load, same cache dir, another batch (fewer images, shuffled): embeddings come from
    # disk, and each image keeps its own scores (results follow the request order).
    load2, cells2 = run_model(
        "clip", [paths[2], paths[0], paths[3]], weights=tiny, load_options={"score": "softmax"}, fresh=True
    )
    notes2 = " | ".join(load2["notes"])
    assert "text embeddings: cache hit" in notes2 and "computed" not in notes2
    assert len(_cache_files(tmp_path)) == 1
    first = {c["image"]["width"]: c["raw"]["logits"] for c in cells}
    for cell in cells2:
        _check_softmax(cell, urbex)
        again = cell["raw"]["logits"]
        assert again == pytest.approx(first[cell["image"]["width"]], abs=1e-4)


def test_default_scores_stand_on_their_own(run_model, tiny: Path, urbex: list[str]) -> None:
    """model.toml's default: each term against the neutral prompt, at CLIP's logit scale. The scores
    are independent probabilities: in [0, 1], not summing to 1; the vocabulary softmax stays in raw."""
    load, cells = run_model("clip", [SAMPLES / "brick.png", SAMPLES / "rocket.jpg"], weights=tiny)
    notes = " | ".join(load["notes"])
    assert "two-way softmax" in notes and "'a photo of something'" in notes and "do not sum to 1" in notes
    assert f"computed for {len(urbex) + 1} prompts" in notes  # the vocabulary and the neutral prompt
    for cell in cells:
        _check_tags(cell, urbex)
        raw = cell["raw"]
        assert raw["score_mode"] == "binary" and raw["neutral"]["term"] == "something"
        scores = [t["score"] for t in cell["tags"]]
        assert all(0.0 <= x <= 1.0 for x in scores)
        assert abs(sum(scores) - 1.0) > 0.5  # independent: no sum to 1 (220 terms)
        for tag in cell["tags"]:  # sigmoid(s cos_t - s cos_n) from raw
            expected = 1 / (1 + math.exp(-(raw["logits"][tag["name"]] - raw["neutral"]["logit"])))
            assert tag["score"] == pytest.approx(expected, rel=1e-5, abs=1e-7)
        assert sum(raw["softmax"].values()) == pytest.approx(1.0, abs=1e-4)
        assert list(raw["softmax"]) == urbex
        expected_softmax = _softmax([raw["logits"][t] for t in urbex])
        assert list(raw["softmax"].values()) == pytest.approx(expected_softmax, rel=1e-4, abs=1e-7)


def test_custom_vocabulary_sigmoid_and_template_ensemble(run_model, tiny: Path, tmp_path: Path) -> None:
    terms = ["factory", "peeling paint", "staircase", "art deco", "fog"]
    templates = ["a photo of {}", "an abandoned place with {}"]
    load, [cell] = run_model(
        "clip",
        [SAMPLES / "coffee.png"],
        weights=tiny,
        load_options={"vocabulary": terms, "score": "sigmoid", "templates": templates},
        fresh=True,
    )
    notes = " | ".join(load["notes"])
    assert "sigmoid" in notes and f"{len(terms)} terms" in notes and "no logit_bias" in notes
    assert "2 template(s)" in notes and f"computed for {2 * len(terms)} prompts" in notes
    _check_tags(cell, terms)
    raw = cell["raw"]
    assert raw["score_mode"] == "sigmoid" and raw["templates"] == templates
    for tag in cell["tags"]:
        assert 0.0 < tag["score"] < 1.0
        assert tag["score"] == pytest.approx(1 / (1 + math.exp(-raw["logits"][tag["name"]])), rel=1e-5)
    assert len(_cache_files(tmp_path)) == 1


def test_folder_without_weights_is_refused(run_model, tiny: Path, tmp_path: Path) -> None:
    """open_clip would quietly build a random model from the config alone: the adapter must not."""
    folder = tmp_path / "config-only"
    folder.mkdir()
    shutil.copy(tiny / "open_clip_config.json", folder)
    with pytest.raises(RemoteError, match="WeightsMissing.*open_clip_model.safetensors"):
        run_model("clip", [SAMPLES / "brick.png"], weights=folder)


def test_fast_decode_keeps_the_shortest_side_at_the_input_size(run_model, tiny: Path, tmp_path: Path) -> None:
    """open_clip resizes the shortest side to the input size (64 px for the tiny model), then crops:
    a 1200 x 800 JPEG is drafted to 150 x 100 (1/8; 1/16 would be 50 px, below 64), never further."""
    path = tmp_path / "photo.jpg"
    Image.open(SAMPLES / "rocket.jpg").convert("RGB").resize((1200, 800)).save(path, "JPEG", quality=90)
    _, [fast] = run_model("clip", [path], weights=tiny)
    _, [exact] = run_model("clip", [path], weights=tiny, load_options={"exact_decode": True})
    assert (fast["image"]["width"], fast["image"]["height"]) == (exact["image"]["width"], exact["image"]["height"])
    assert (fast["image"]["decoded_width"], fast["image"]["decoded_height"], fast["image"]["draft"]) == (150, 100, True)
    assert (exact["image"]["decoded_width"], exact["image"]["decoded_height"], exact["image"]["draft"]) == (
        1200,
        800,
        False,
    )
    assert list(fast["raw"]["logits"]) == list(exact["raw"]["logits"])
    assert (
        max(abs(a - b) for a, b in zip(fast["raw"]["logits"].values(), exact["raw"]["logits"].values(), strict=True))
        < 0.5
    )
