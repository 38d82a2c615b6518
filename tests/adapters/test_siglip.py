"""The siglip model end to end: a tiny random SigLIP-architecture open_clip model (tests/tiny/siglip.py)
through the real runner host, with siglip's own model.toml (score = sigmoid).

SigLIP is trained with a sigmoid loss: each term's score is sigmoid(logit_scale * cos + logit_bias),
a probability of its own. A random model's scores mean nothing, so this checks the definition:
scores from the raw logits and the model's learned bias, each in [0, 1], not summing to 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.models.registry import load_registry
from orchestrator.paths import read_vocabulary
from tests.support import SAMPLES

pytestmark = pytest.mark.adapter


def test_siglip_scores_each_term_with_its_own_sigmoid(run_model, tiny_model: Callable[[str], Path]) -> None:
    spec = load_registry()["siglip"]
    assert spec.kind == "zero-shot" and spec.load["score"] == "sigmoid" and len(spec.revision) == 40
    urbex = read_vocabulary("urbex", spec.folder)
    load, cells = run_model("siglip", [SAMPLES / "brick.png", SAMPLES / "rocket.jpg"], weights=tiny_model("siglip"))
    notes = " | ".join(load["notes"])
    assert "sigmoid(logit_scale*cos + logit_bias) per term" in notes and "no logit_bias" not in notes
    assert "logit_bias -10.00" in notes and f"vocabulary: urbex ({len(urbex)} terms)" in notes
    for cell in cells:
        assert cell["status"] == "ok", cell.get("message")
        raw = cell["raw"]
        assert raw["score_mode"] == "sigmoid" and raw["logit_bias"] == pytest.approx(-10.0)
        assert sorted(t["name"] for t in cell["tags"]) == sorted(urbex)
        scores = [t["score"] for t in cell["tags"]]
        assert all(0.0 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
        assert abs(sum(scores) - 1.0) > 1e-3  # independent: they need not sum to 1
        for tag in cell["tags"]:  # raw logits already hold the bias
            assert tag["score"] == pytest.approx(1 / (1 + math.exp(-raw["logits"][tag["name"]])), rel=1e-5)
    assert cells[0]["raw"]["logits"] != cells[1]["raw"]["logits"]
