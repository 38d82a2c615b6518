"""The comparison and `mltag eval` through the CLI, on a real results store (no model runs: the cells are
written with the store's own API, as a run would write them)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.images import hash_file
from orchestrator.paths import PROJECT_ROOT
from orchestrator.store import CellMeta, ResultStore
from tests.support import SCHEMA


@pytest.fixture()
def archive(tmp_path: Path) -> Path:
    """photos/hall.jpg and photos/stairs.jpg, two taggers and a captioner, stored in photos/.mltag."""
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "hall.jpg").write_bytes(b"hall bytes")
    (folder / "stairs.jpg").write_bytes(b"stairs bytes")
    hall, stairs = hash_file(folder / "hall.jpg"), hash_file(folder / "stairs.jpg")
    db = ResultStore(folder / ".mltag" / "results.sqlite")
    db.begin_run("run1", 0.0, {}, ["analyze"])
    db.record_images("run1", [hall, stairs])
    cells = {
        "wd14": {hall: [("broken_windows", 0.9), ("graffiti", 0.4)], stairs: [("stairs", 0.8), ("rust", 0.3)]},
        "clip": {hall: [("broken window", 0.6), ("derelict", 0.5)], stairs: [("staircase", 0.7), ("rust", 0.2)]},
    }
    for model, by_image in cells.items():
        meta = CellMeta(options_key="k", kind="tagger", revision="r", device="cpu", load_s=1.0)
        for image, tags in by_image.items():
            db.put_cell(
                "run1",
                image.sha256,
                model,
                {"status": "ok", "inference_s": 0.25, "tags": [{"name": n, "score": s} for n, s in tags]},
                meta,
            )
    cap = CellMeta(options_key="k", kind="captioner", revision="r", device="cpu", load_s=5.0)
    caption = {"status": "ok", "inference_s": 2.0, "caption": "An abandoned hall with broken windows.", "tags": []}
    db.put_cell("run1", hall.sha256, "florence2", caption, cap)
    db.put_cell("run1", stairs.sha256, "florence2", {"status": "timeout", "message": "no answer"}, cap)
    db.finish_run("run1", 1.0)
    db.close()
    (tmp_path / "labels.csv").write_text(
        'image,tags\nphotos/hall.jpg,"broken window, abandoned"\nphotos/stairs.jpg,staircase\n', encoding="utf-8"
    )
    (tmp_path / "synonyms.txt").write_text("derelict = abandoned\nstairs = staircase\n", encoding="utf-8")
    return folder


def test_eval_from_the_store_with_synonyms(archive: Path) -> None:
    labels, synonyms = archive.parent / "labels.csv", archive.parent / "synonyms.txt"
    runner = CliRunner()
    plain = runner.invoke(app, ["eval", "--labels", str(labels), str(archive), "--format", "json"])
    assert plain.exit_code == 0, plain.output
    got = json.loads(plain.stdout)
    assert got["labelled"] == 2 and got["unmatched_labels"] == []
    by_model = {r["model"]: r for r in got["models"]}
    # clip, own: hall {broken window, derelict} vs {broken window, abandoned}: TP 1 FP 1 FN 1;
    #            stairs {staircase, rust} vs {staircase}: TP 1 FP 1. P 2/4, R 2/3.
    assert by_model["clip"]["own"]["precision"] == 0.5
    assert by_model["clip"]["own"]["recall"] == pytest.approx(2 / 3, abs=1e-6)
    # with derelict = abandoned: TP 3 FP 1 FN 0 -> P .75, R 1; stairs = staircase helps wd14 the same way.
    merged = runner.invoke(
        app,
        [
            "eval",
            "--labels",
            str(labels),
            "--store",
            str(archive / ".mltag" / "results.sqlite"),
            "--synonyms",
            str(synonyms),
            "--format",
            "csv",
        ],
    )
    assert merged.exit_code == 0, merged.output
    rows = {line.split(",")[1]: line.split(",") for line in merged.stdout.splitlines()[1:]}
    assert rows["clip"][5:7] == ["0.75", "1.0"]
    # florence2 timed out on stairs: it predicted nothing there (recall), and its caption tags count on hall.
    assert rows["florence2"][4] == "1"


def test_eval_says_what_to_fix(archive: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    elsewhere = tmp_path / "other.csv"
    elsewhere.write_text("nowhere/a.jpg,rust\n", encoding="utf-8")
    out = runner.invoke(app, ["eval", "--labels", str(elsewhere), str(archive)])
    assert out.exit_code == 2 and "names an image in the results" in out.output
    bad = archive.parent / "bad-synonyms.txt"
    bad.write_text("derelict abandoned\n", encoding="utf-8")
    out = runner.invoke(
        app, ["eval", "--labels", str(archive.parent / "labels.csv"), str(archive), "--synonyms", str(bad)]
    )
    assert out.exit_code == 2 and "bad-synonyms.txt:1: expected 'tag = name'" in out.output


def test_report_shows_the_comparison_views_and_json_validates(archive: Path) -> None:
    runner = CliRunner()
    synonyms = str(archive.parent / "synonyms.txt")
    out = runner.invoke(
        app,
        [
            "report",
            str(archive),
            "--show-matrix",
            "--show-timing",
            "--show-confidence",
            "Broken_Windows",
            "--synonyms",
            synonyms,
            "--top",
            "3",
            "--compare-top",
            "3",
        ],
    )
    assert out.exit_code == 0, out.output
    text = out.stdout
    assert "model agreement: " in text and "each model's top-3 normalised tags" in " ".join(text.split())
    assert "agreement matrix" in text and "timing per model" in text
    assert "confidence for 'broken window' across models" in text
    assert "CONSENSUS (3+ models): broken window 3/3" in text
    js = runner.invoke(app, ["report", str(archive), "--format", "json", "--synonyms", synonyms, "--threshold", "0.3"])
    assert js.exit_code == 0, js.output
    document = json.loads(js.stdout)
    jsonschema.validate(document, SCHEMA)
    comparison = document["comparison"]
    assert comparison["threshold"] == 0.3 and comparison["synonyms"] == 2
    assert comparison["folder"]["consensus"][0]["tag"] == "broken window"
    staircase = next(c for c in comparison["folder"]["consensus"] if c["tag"] == "staircase")
    assert staircase["models"] == ["wd14", "clip"]  # wd14's "stairs" via the synonym map
    stored = {m: c for img in document["images"] for m, c in img["results"].items()}
    assert "stairs" in {t["name"] for t in stored["wd14"]["tags"]}  # raw stays raw


def test_a_bad_synonym_file_stops_analyze_before_any_model_runs(tmp_path: Path) -> None:
    out = CliRunner().invoke(
        app,
        [
            "analyze",
            str(PROJECT_ROOT / "samples"),
            "--models",
            "wd14",
            "--no-store",
            "--synonyms",
            str(tmp_path / "missing.txt"),
        ],
    )
    assert out.exit_code == 2 and "cannot read the synonym file" in out.output
    out = CliRunner().invoke(
        app, ["analyze", str(PROJECT_ROOT / "samples"), "--models", "wd14", "--no-store", "--top", "-1"]
    )
    assert out.exit_code == 2 and "--top must be 0 (all) or more" in out.output


def test_top_changes_only_what_is_shown(archive: Path) -> None:
    """--top 1 and --top 20 compare the same tags: same consensus, matrix, agreement and summary."""
    runner = CliRunner()
    docs = {}
    for top in ("1", "20"):
        js = runner.invoke(app, ["report", str(archive), "--format", "json", "--top", top])
        assert js.exit_code == 0, js.output
        docs[top] = json.loads(js.stdout)
        jsonschema.validate(docs[top], SCHEMA)
    assert docs["1"]["comparison"] == docs["20"]["comparison"]
    assert docs["1"]["comparison"]["folder"]["consensus"], "something must be compared for the test to mean much"
    assert [i["summary"] for i in docs["1"]["images"]] == [i["summary"] for i in docs["20"]["images"]]
    tables = {top: runner.invoke(app, ["report", str(archive), "--top", top]).stdout for top in ("1", "20")}
    consensus = {
        top: [line for line in text.splitlines() if line.startswith(("SUMMARY", "CONSENSUS", "MODEL AGR"))]
        for top, text in tables.items()
    }
    # the lines agree except where --top 1 shortens a list ("+N more")
    assert [line.split(" | ")[0] for line in consensus["1"] if line.startswith("SUMMARY")] == [
        line.split(" | ")[0] for line in consensus["20"] if line.startswith("SUMMARY")
    ]
    assert [line for line in consensus["1"] if line.startswith("MODEL AGR")] == [
        line for line in consensus["20"] if line.startswith("MODEL AGR")
    ]
    # what is shown does change: wd14's box lists one tag with --top 1
    assert tables["1"].count("graffiti") < tables["20"].count("graffiti")
    # --compare-top is what changes the comparison
    narrow = json.loads(runner.invoke(app, ["report", str(archive), "--format", "json", "--compare-top", "1"]).stdout)
    assert narrow["comparison"]["top_k"] == 1 and narrow["comparison"] != docs["1"]["comparison"]
    # the plan's JSON: tag_count per cell, summary per image and for the folder
    image = docs["1"]["images"][0]
    assert image["results"]["wd14"]["tag_count"] == 2
    assert set(image["summary"]) == {"total_unique_tags", "common_tags", "model_agreement_score"}
    assert docs["1"]["comparison"]["folder"]["summary"]["total_unique_tags"] >= 1
    assert docs["1"]["schema_version"] == 2
    # the cells were stored without tag_count (as every older store): it is added as they are read
    lines = runner.invoke(app, ["report", str(archive), "--format", "jsonl"]).stdout.splitlines()
    assert [json.loads(line)["summary"] for line in lines[1:]] == [i["summary"] for i in docs["1"]["images"]]
