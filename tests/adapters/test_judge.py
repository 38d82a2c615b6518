"""The judge end to end: a tiny random Qwen2 causal LM merging other models' outputs.

Through the real runner host (text-only requests carrying `context`, no image data) and through
the real CLI (`--judge` after wd14 on the sample photos). The decisions made on the judge's answer
(format parsing, dropping tags no model mentioned) are pure functions: tests/unit/test_judge_answer.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from orchestrator.paths import PROJECT_ROOT
from schemas.status import SUCCESS
from tests.adapters.vlm_cells import RUN_FIELDS
from tests.support import JUDGE_CONTEXT, SCHEMA, mltag

pytestmark = pytest.mark.adapter


def test_text_only_requests_through_the_host(run_model, tiny: Path) -> None:
    load, [merged, empty] = run_model(
        "qwen25-judge", [JUDGE_CONTEXT, {"outputs": []}], weights=tiny, max_new_tokens=6, min_new_tokens=6
    )
    assert load["device"] == "cpu" and load["dtype"] == "bfloat16"  # model.toml's [load] dtype for cpu
    assert any("synthesis" in note for note in load["notes"])
    assert merged["id"] == "img0" and merged["status"] in SUCCESS
    run = merged["raw"]["generations"]["merge"]
    assert set(run) == RUN_FIELDS and run["new_tokens"] == 6  # min == max: exactly 6 tokens
    assert "[florence2, captioner]" in run["prompt"] and "tags: indoors, hallway, rust" in run["prompt"]
    assert run["prompt_tokens"] > 50 and merged["raw"]["inputs"] == ["florence2", "wd14"]
    assert "image" not in merged or merged["image"] == {}  # no image was decoded
    for tag in merged["tags"]:
        assert tag["category"] == "judge" and tag["estimated"] is True
    if merged["status"] == "no_tags":
        assert merged["message"]
    assert empty["status"] == "no_tags" and "nothing to merge" in empty["message"]


def test_cli_judge_column_after_wd14(tiny_model, tiny: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea.png", "rocket.jpg"):
        shutil.copy(PROJECT_ROOT / "samples" / name, folder / name)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "analyze",
            str(folder),
            "--models",
            "wd14",
            "--judge",
            "qwen25-judge",
            f"--weights=wd14={tiny_model('wd14')}",
            f"--weights=qwen25-judge={tiny}",
            "--offline",
            "--device",
            "cpu",
            "--option",
            "qwen25-judge.max_new_tokens=5",
            "--option",
            "qwen25-judge.min_new_tokens=5",
            "--format",
            "json",
            "--no-store",
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert [(m["name"], m["kind"]) for m in doc["models"]] == [("wd14", "tagger"), ("qwen25-judge", "judge")]
    assert doc["options"]["judge"] == "qwen25-judge"
    for image in doc["images"]:
        wd14, judge = image["results"]["wd14"], image["results"]["qwen25-judge"]
        assert wd14["status"] == "ok" and judge["status"] in SUCCESS
        run = judge["raw"]["generations"]["merge"]
        assert judge["raw"]["inputs"] == ["wd14"] and run["new_tokens"] == 5
        shown = [t["name"] for t in wd14["tags"] if t.get("category") != "rating"][:3]
        assert all(name in run["prompt"] for name in shown)


def test_mltag_judge_over_stored_results(tiny_model, tiny: Path, tmp_path: Path) -> None:
    """`mltag judge` merges what the store holds, without re-running wd14; `report` then shows both."""
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(PROJECT_ROOT / "samples" / "coffee.png", folder / "coffee.png")

    first = mltag(
        "analyze",
        str(folder),
        "--models",
        "wd14",
        f"--weights=wd14={tiny_model('wd14')}",
        "--offline",
        "--device",
        "cpu",
        "--format",
        "json",
    )
    assert first.returncode == 0, first.stderr
    judged = mltag(
        "judge",
        str(folder),
        "--judge",
        "qwen25-judge",
        f"--weights=qwen25-judge={tiny}",
        "--offline",
        "--device",
        "cpu",
        "--option",
        "max_new_tokens=4",
        "--format",
        "json",
    )
    assert judged.returncode == 0, judged.stderr
    assert "1 computed" in judged.stderr  # the judge's one cell; wd14 was not run again
    doc = json.loads(judged.stdout)
    jsonschema.validate(doc, SCHEMA)
    [image] = doc["images"]
    assert image["results"]["wd14"] == json.loads(first.stdout)["images"][0]["results"]["wd14"]
    assert image["results"]["qwen25-judge"]["raw"]["inputs"] == ["wd14"]
    report = mltag("report", str(folder), "--format", "json")
    assert report.returncode == 0, report.stderr
    assert [m["name"] for m in json.loads(report.stdout)["models"]] == ["wd14", "qwen25-judge"]


# -- a captioner as the judge: it sees the photo ---------------------------------------------------
def test_cli_vision_judge_sees_the_photo_and_the_outputs(tiny_model, tmp_path: Path) -> None:
    """`--judge qwen25vl`: the tiny Qwen2.5-VL is sent each photo AND wd14's tags; its column is a
    synthesis named qwen25vl-judge, loaded from the captioner's --weights."""
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(PROJECT_ROOT / "samples" / "chelsea.png", folder / "chelsea.png")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "analyze",
            str(folder),
            "--models",
            "wd14",
            "--judge",
            "qwen25vl",
            f"--weights=wd14={tiny_model('wd14')}",
            f"--weights=qwen25vl={tiny_model('qwen_vl') / 'qwen2_5_vl'}",
            "--offline",
            "--device",
            "cpu",
            "--option",
            "qwen25vl-judge.max_new_tokens=4",
            "--option",
            "qwen25vl-judge.min_new_tokens=4",
            "--format",
            "json",
            "--no-store",
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert [(m["name"], m["kind"]) for m in doc["models"]] == [("wd14", "tagger"), ("qwen25vl-judge", "judge")]
    assert doc["comparison"]["synthesis"] == ["qwen25vl-judge"]
    [image] = doc["images"]
    wd14, judge = image["results"]["wd14"], image["results"]["qwen25vl-judge"]
    assert judge["status"] in SUCCESS, judge
    assert judge["raw"]["saw_image"] is True and judge["raw"]["inputs"] == ["wd14"]
    assert (judge["image"]["width"], judge["image"]["height"]) == (wd14["image"]["width"], wd14["image"]["height"])
    run = judge["raw"]["generations"]["merge"]
    assert run["prompt"].startswith("You see a photo") and "[wd14, tagger]" in run["prompt"]
    shown = [t["name"] for t in wd14["tags"] if t.get("category") != "rating"][:3]
    assert shown and all(name in run["prompt"] for name in shown)
    assert run["new_tokens"] == 4
    # the image tokens are in the prompt: far more than the text alone would take
    assert run["prompt_tokens"] > len(run["prompt"].split())
