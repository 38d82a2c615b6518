"""The moondream adapter end to end on a tiny random Moondream2 built from the REAL upstream code.

tests/tiny/moondream.py lays the unmodified remote-code files of vikhyatk/moondream2 at tag
2025-06-21 (../shared/upstream) out as an offline Hugging Face cache with tiny random weights; the
runner then loads it exactly as a user's load goes: hub id + pinned tag, trust_remote_code, hub
offline, in the tf4 env (transformers 4.55). Random text means nothing: the tests check structure,
determinism, that the image reaches the model, the options and the remote-code policy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from orchestrator.paths import PROJECT_ROOT
from schemas.status import SUCCESS
from tests.support import SAMPLES

pytestmark = pytest.mark.adapter

SHORT = {"max_new_tokens": 5}


def _check(cell: dict, path: Path, tasks: set[str]) -> dict:
    assert cell["status"] in SUCCESS, cell.get("message")
    assert (cell["image"]["width"], cell["image"]["height"]) == Image.open(path).size
    raw = cell["raw"]
    assert set(raw["generations"]) == tasks
    assert raw["generate"]["temperature"] == 0 and raw["generate"]["variant"] is None
    for run in raw["generations"].values():
        assert isinstance(run["text"], str) and run["seconds"] > 0
        # the stand-in tokenizer decodes every id to a word: 5 tokens are 1..5 words
        assert 1 <= len(run["text"].split()) <= SHORT["max_new_tokens"]
    if cell["caption"] is not None:
        assert cell["caption"] == raw["generations"]["caption"]["text"].strip()
    return raw


def test_pinned_remote_code_load_from_the_hub_cache(run_model, hub: Path, hf_modules: Path) -> None:
    paths = [SAMPLES / "chelsea.png", SAMPLES / "rocket.jpg"]
    load, cells = run_model("moondream2", paths, **SHORT)
    assert load["model_version"] == "2025-06-21" and load["device"] == "cpu"
    assert any("remote code" in n for n in load["notes"])
    raws = [_check(c, p, {"caption"}) for c, p in zip(cells, paths, strict=True)]
    assert raws[0]["generations"]["caption"]["prompt"] == "caption(length='normal')"
    texts = [r["generations"]["caption"]["text"] for r in raws]
    assert texts[0] != texts[1]  # the image reaches the model
    # greedy: the same image gives the same text, in any order
    _, again = run_model("moondream2", paths[::-1], **SHORT)
    assert [c["raw"]["generations"]["caption"]["text"] for c in again[::-1]] == texts
    # the code that ran is the upstream file, copied by transformers from the pinned snapshot
    copied = list(hf_modules.rglob("hf_moondream.py"))
    upstream = PROJECT_ROOT.parent / "shared" / "upstream" / "moondream2-2025-06-21" / "hf_moondream.py"
    assert copied and all(p.read_bytes() == upstream.read_bytes() for p in copied)


def test_tags_query_detect_and_lengths(run_model, hub: Path) -> None:
    path = SAMPLES / "coffee.png"
    _, [cell] = run_model("moondream2", [path], ask="both", length="short", detect=["door"], **SHORT)
    raw = _check(cell, path, {"caption", "tags"})
    assert raw["generations"]["caption"]["prompt"] == "caption(length='short')"
    assert raw["generations"]["tags"]["prompt"].startswith("List 15 to 30 short tags")
    for tag in cell["tags"]:
        assert tag["estimated"] is True and tag["category"] == "vlm"
        assert tag["name"] in raw["generations"]["tags"]["text"].lower()
    boxes = raw["detections"]["door"]
    assert isinstance(boxes, list)
    for box in boxes:
        assert set(box) == {"x_min", "y_min", "x_max", "y_max"}
    # a custom prompt goes to query()
    _, [asked] = run_model("moondream2", [path], prompt="What is in this image?", **SHORT)
    assert _check(asked, path, {"caption"})["generations"]["caption"]["prompt"] == "What is in this image?"


def test_weights_hub_cache_folder_and_bad_options(
    run_model, hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))  # only --weights can find it
    load, [cell] = run_model("moondream2", [SAMPLES / "rocket.jpg"], weights=hub, length="huge")
    assert load["model_version"] == f"2025-06-21 from the hub cache {hub}"
    assert cell["status"] == "error" and "length must be one of" in cell["message"]
    # the same load from the pinned snapshot folder inside that cache: --weights takes either
    repo = hub / "models--vikhyatk--moondream2"
    snapshot = repo / "snapshots" / (repo / "refs" / "2025-06-21").read_text().strip()
    load, [cell] = run_model("moondream2", [SAMPLES / "rocket.jpg"], weights=snapshot, length="huge")
    assert load["model_version"] == f"2025-06-21 from the hub cache {hub}"


def test_missing_weights_offline_names_the_fix(run_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.errors import RunnerError

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    with pytest.raises(RunnerError, match="not in the Hugging Face cache"):
        run_model("moondream2", [SAMPLES / "rocket.jpg"])
