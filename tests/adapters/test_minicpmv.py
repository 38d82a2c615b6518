"""The minicpmv adapter (minicpm-v45) through the real runner host, against an INTERFACE STAND-IN.

NOT the upstream code: MiniCPM-V 4.5's remote code is not available offline, so the tiny
snapshot's code is tests/tiny/standins/minicpmv_standin.py, written from the documented API
(AutoModel/AutoTokenizer with trust_remote_code, `model.chat(msgs, tokenizer, enable_thinking=False)`).
These tests check mltag's side: the pinned remote-code load from a hub cache (offline), the chat
calls, greedy determinism, prompts, and the remote-code policy. They say nothing about whether the
real 4.5 code behaves the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.status import SUCCESS
from tests.support import SAMPLES

pytestmark = pytest.mark.adapter

SHORT = {"max_new_tokens": 6, "min_new_tokens": 6}


def test_pinned_load_and_chat_caption_and_tags(run_model, hub: Path) -> None:
    paths = [SAMPLES / "chelsea.png", SAMPLES / "rocket.jpg"]
    load, cells = run_model("minicpm-v45", paths, ask="both", **SHORT)
    assert load["model_version"] == "fd3209b2e0580e346fc33d2c6f85b6e9332eecda"
    assert load["dtype"] == "bfloat16" and any("enable_thinking=False" in n for n in load["notes"])
    for cell in cells:
        assert cell["status"] in SUCCESS, cell.get("message")
        runs = cell["raw"]["generations"]
        assert set(runs) == {"caption", "tags"} and cell["raw"]["generate"]["sampling"] is False
        assert runs["tags"]["prompt"].startswith("List 15 to 30")
        if cell["caption"] is not None:
            assert cell["caption"] == runs["caption"]["text"].strip()
    texts = [c["raw"]["generations"]["caption"]["text"] for c in cells]
    assert texts[0] != texts[1] and all(texts)
    _, again = run_model("minicpm-v45", paths[::-1], ask="both", **SHORT)
    assert [c["raw"]["generations"]["caption"]["text"] for c in again[::-1]] == texts  # greedy


def test_local_folder_weights(run_model, hub: Path) -> None:
    snapshot = next((hub / "models--openbmb--MiniCPM-V-4_5" / "snapshots").iterdir())
    load, [cell] = run_model("minicpm-v45", [SAMPLES / "coffee.png"], weights=snapshot, **SHORT)
    assert load["model_version"] == str(snapshot)
    assert cell["status"] in SUCCESS
    # the cache root holding the pinned revision is the same load (orchestrator/models/loadspec.py)
    load, [cell] = run_model("minicpm-v45", [SAMPLES / "coffee.png"], weights=hub, **SHORT)
    assert load["model_version"] == str(snapshot)
    assert cell["status"] in SUCCESS


def test_a_folder_without_config_json_says_what_was_expected(run_model, tmp_path: Path) -> None:
    """transformers 4.x would answer with its list of several hundred model types."""
    from orchestrator.errors import RemoteError

    with pytest.raises(
        RemoteError, match="has no config.json: not a snapshot folder of openbmb/MiniCPM-V-4_5"
    ) as caught:
        run_model("minicpm-v45", [SAMPLES / "coffee.png"], weights=tmp_path)
    assert caught.value.type == "WeightsMissing" and len(caught.value.message) < 300


def test_not_cached_offline(run_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.errors import RunnerError

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(RunnerError, match="not in the Hugging Face cache"):
        run_model("minicpm-v45", [SAMPLES / "coffee.png"])
