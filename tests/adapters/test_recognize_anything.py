"""The RAM++ adapter end to end: a tiny random RAM++ built by the REAL `ram` package (the wheel of
xinyu1205/recognize-anything at the pinned commit, installed in the ram env), through the runner host.

Random weights give meaningless tags; the tests check what the adapter promises: the package's own
tag string is kept, every tag is a class whose sigmoid score exceeds its per-class threshold (and
every such class is a tag), all 4,585 scores are kept, images differ (batches: tests/adapters/test_contract.py).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas.status import SUCCESS
from tests.support import SAMPLES

pytestmark = pytest.mark.adapter


def _check(cell: dict) -> dict:
    assert cell["status"] in SUCCESS, cell.get("message")
    raw = cell["raw"]
    assert len(raw["scores"]) == 4585 and all(0.0 <= s <= 1.0 for s in raw["scores"].values())
    names = [t["name"] for t in cell["tags"]]
    # the package's own decision (its " | " string) equals sigmoid > per-class threshold, recomputed here
    assert sorted(names) == sorted(t for t in raw["tags_text"].split(" | ") if t) == sorted(raw["above_threshold"])
    for tag in cell["tags"]:
        assert tag["category"] == "ram" and "estimated" not in tag
        assert tag["score"] == raw["scores"][tag["name"]]
    assert [t["score"] for t in cell["tags"]] == sorted((t["score"] for t in cell["tags"]), reverse=True)
    if cell["status"] == "no_tags":
        assert not names and raw["tags_text"] == ""
    return raw


def test_tags_scores_and_thresholds(run_model, tiny: Path) -> None:
    paths = [SAMPLES / "chelsea.png", SAMPLES / "rocket.jpg"]
    load, cells = run_model("ram-plus", paths, weights=tiny)
    assert load["device"] == "cpu" and str(tiny) in load["model_version"]
    assert any("image encoder base at 224 px" in n for n in load["notes"])
    assert any("4585 classes" in n for n in load["notes"])
    raws = [_check(c) for c in cells]
    assert raws[0]["scores"] != raws[1]["scores"]  # the image reaches the model
    assert any(cell["status"] == "ok" for cell in cells) or all(not r["above_threshold"] for r in raws)


ARCH = """
import json, torch
from runners.adapters.recognize_anything import architecture
vit = {"visual_encoder.pos_embed": torch.zeros(1, 197, 768)}
swin_l = {"visual_encoder.patch_embed.proj.weight": torch.zeros(192, 3, 4, 4)}
swin_b = {"visual_encoder.patch_embed.proj.weight": torch.zeros(128, 3, 4, 4)}
out = [architecture(vit, None), architecture(swin_l, None), architecture(swin_b, 224)]
try:
    architecture({}, None)
except ValueError as exc:
    out.append(str(exc))
print(json.dumps(out))
"""


def test_architecture_from_checkpoint_keys(env_script: Callable[..., list]) -> None:
    assert env_script("ram", ARCH) == [
        ["base", 224],
        ["swin_l", 384],
        ["swin_b", 224],
        "not a RAM++ checkpoint: no visual_encoder weights",
    ]


def test_checkpoint_file_with_the_pinned_bert_tokenizer_from_the_hub_cache(
    run_model, tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bare .pth (no vocab.txt beside it): the package's tokenizer comes from bert-base-uncased at the
    revision model.toml pins, read from the Hugging Face cache (offline), as for a real user."""
    from orchestrator.models.registry import load_registry

    revision = load_registry()["ram-plus"].load["text_encoder_revision"]
    repo = tmp_path / "hub" / "models--bert-base-uncased"
    (repo / "snapshots" / revision).mkdir(parents=True)
    (repo / "snapshots" / revision / "vocab.txt").write_text((tiny / "vocab.txt").read_text())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    alone = tmp_path / "weights" / "ram_plus_swin_large_14m.pth"
    alone.parent.mkdir()
    shutil.copy(tiny / "ram_plus_swin_large_14m.pth", alone)  # a copy: --weights paths are resolved
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    load, [cell] = run_model("ram-plus", [SAMPLES / "coffee.png"], weights=alone)
    assert str(alone) in load["model_version"]
    _check(cell)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))  # the tokenizer is missing: say so
    from orchestrator.errors import RunnerError

    with pytest.raises(RunnerError, match="bert-base-uncased@86b5e0934494 is not in the Hugging Face cache"):
        run_model("ram-plus", [SAMPLES / "coffee.png"], weights=alone)
