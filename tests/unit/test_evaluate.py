"""`mltag eval` (orchestrator/compare/evaluate.py): labels CSV parsing and metrics computed by hand."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.compare.evaluate import best_threshold, evaluate, parse_labels, read_labels
from orchestrator.compare.normalise import Normaliser
from orchestrator.document import Body, Tag
from orchestrator.errors import LabelsError
from orchestrator.report.evaluation_view import evaluation_table
from orchestrator.report.flat import evaluation_csv

SHA1, SHA2, SHA3 = "1" * 64, "2" * 64, "3" * 64


def tag(name: str, score: float) -> Tag:
    return {"name": name, "score": score}


def document() -> Body:
    """A, B taggers; C never ran (skipped). Image 3 has no label."""
    return {
        "models": [{"name": n, "kind": "tagger", "revision": "r"} for n in "ABC"],
        "images": [
            {
                "path": "one.jpg",
                "sha256": SHA1,
                "results": {
                    "A": {"status": "ok", "tags": [tag("Windows", 0.9), tag("rust", 0.6), tag("stairs", 0.4)]},
                    "B": {"status": "ok", "tags": [tag("window", 0.8), tag("door", 0.7), tag("graffiti", 0.2)]},
                    "C": {"status": "skipped", "message": "env missing"},
                },
            },
            {
                "path": "two.jpg",
                "sha256": SHA2,
                "results": {
                    "A": {"status": "ok", "tags": [tag("graffiti", 0.5), tag("window", 0.3)]},
                    "B": {"status": "timeout", "message": "slow"},
                    "C": {"status": "skipped", "message": "env missing"},
                },
            },
            {
                "path": "three.jpg",
                "sha256": SHA3,
                "results": {
                    "A": {"status": "ok", "tags": [tag("rust", 0.9)]},
                    "B": {"status": "ok", "tags": [tag("rust", 0.9)]},
                    "C": {"status": "skipped", "message": "env missing"},
                },
            },
        ],
    }


LABELS = {SHA1: {"rust", "windows", "door"}, SHA2: {"Graffiti"}}


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return evaluate(document(), LABELS, Normaliser())


def test_own_threshold_micro_metrics(result: dict) -> None:
    # A, image 1: {window, rust, stair} vs {rust, window, door}: TP 2, FP 1, FN 1
    #    image 2: {graffiti, window} vs {graffiti}: TP 1, FP 1, FN 0
    #    micro: TP 3, FP 2, FN 1 -> P 3/5 = .6, R 3/4 = .75, F1 2*3 / (2*3 + 2 + 1) = 6/9
    #    macro: image F1s 4/6 and 2/3 -> 2/3
    a = next(r for r in result["models"] if r["model"] == "A")
    assert a["own"] == {
        "precision": 0.6,
        "recall": 0.75,
        "f1": pytest.approx(2 / 3, abs=1e-6),
        "macro_f1": pytest.approx(2 / 3, abs=1e-6),
        "tp": 3,
        "fp": 2,
        "fn": 1,
        "predicted": 5,
    }
    assert a["images"] == 2 and a["failed"] == 0


def test_best_threshold_sweep(result: dict) -> None:
    # A's scores, best first: .9 window T, .6 rust T, .5 graffiti T, .4 stair F, .3 window F; 4 true tags.
    #    F1 at .9 = 2/5, .6 = 4/6, .5 = 6/7, .4 = 6/8, .3 = 6/9 -> best .5: P 1, R 3/4, F1 6/7
    #    macro at .5: image 1 {window, rust} vs 3 true: 4/5; image 2 {graffiti}: 1 -> .9
    a = next(r for r in result["models"] if r["model"] == "A")
    assert a["best"]["threshold"] == 0.5
    assert (a["best"]["precision"], a["best"]["recall"]) == (1.0, 0.75)
    assert a["best"]["f1"] == pytest.approx(6 / 7, abs=1e-6) and a["best"]["macro_f1"] == 0.9


def test_failed_cells_cost_recall_and_skipped_models_are_not_ranked(result: dict) -> None:
    # B, image 1: {window, door, graffiti} vs {rust, window, door}: TP 2, FP 1, FN 1; image 2 timed out:
    #    nothing predicted vs {graffiti}: FN 1. Micro: P 2/3, R 2/4, F1 4/7. Best: .7 -> P 1, R .5, F1 4/6.
    b = next(r for r in result["models"] if r["model"] == "B")
    assert b["failed"] == 1 and b["images"] == 2
    assert b["own"]["precision"] == pytest.approx(2 / 3, abs=1e-6) and b["own"]["recall"] == 0.5
    assert b["own"]["f1"] == pytest.approx(4 / 7, abs=1e-6)
    assert b["best"]["threshold"] == 0.7 and b["best"]["f1"] == pytest.approx(2 / 3, abs=1e-6)
    c = result["models"][-1]
    assert c["model"] == "C" and c["own"] is None and c["best"] is None and "did not run" in c["note"]


def test_ranking_and_counts(result: dict) -> None:
    assert [r["model"] for r in result["models"]] == ["A", "B", "C"]  # best F1 6/7 > 4/6 > none
    assert result["labelled"] == 2 and result["unlabelled"] == 1 and result["true_tags"] == 4
    assert result["unmatched_labels"] == []
    assert json.loads(json.dumps(result)) == result


def test_labels_for_images_not_in_the_results_are_reported() -> None:
    rows = parse_labels(f"{SHA1},rust\nnot/there.jpg,rust\n{'4' * 64},door\n", Path("/data"))
    out = evaluate(document(), rows, Normaliser())
    assert out["unmatched_labels"] == ["not/there.jpg", "4" * 64]
    assert out["labelled"] == 1 and out["unlabelled"] == 2


def test_synonyms_apply_to_labels_and_predictions() -> None:
    doc: Body = {
        "models": [{"name": "A", "kind": "tagger"}],
        "images": [
            {"path": "x.jpg", "sha256": SHA1, "results": {"A": {"status": "ok", "tags": [tag("abandoned", 0.8)]}}}
        ],
    }
    assert evaluate(doc, {SHA1: {"Derelict"}}, Normaliser())["models"][0]["own"]["f1"] == 0.0
    merged = evaluate(doc, {SHA1: {"Derelict"}}, Normaliser({"derelict": "abandoned"}))
    assert merged["models"][0]["own"]["f1"] == 1.0


def test_best_threshold_ties_go_to_the_higher_threshold() -> None:
    # .8 T then .5 F, .5 T together: F1 at .8 = 2/(2+0+1) = 2/3; at .5 = 4/(4+1+0) = 4/5 -> .5.
    assert best_threshold([({"a": 0.8, "b": 0.5, "c": 0.5}, {"a", "c"})]) == 0.5
    # .9 T alone: F1 1.0; adding .4 F keeps F1 below -> .9. Nothing predicted: None.
    assert best_threshold([({"a": 0.9, "b": 0.4}, {"a"})]) == 0.9
    assert best_threshold([({}, {"a"})]) is None


def test_labels_csv_quoting_header_comments_and_bom() -> None:
    text = (
        "\ufeffimage,tags\n"
        "# a comment row\n"
        'photos/a.jpg,"rust, broken window , graffiti"\n'  # one quoted column
        "photos/b.jpg,staircase,peeling paint\n"  # one tag per column
        "\n"
        f"{SHA1.upper()},\n"  # a sha256, explicitly no tags
        "photos/a.jpg,door\n"
    )
    rows = parse_labels(text, Path("/archive"))
    assert [(r.ref, r.key, r.tags) for r in rows] == [
        ("photos/a.jpg", "/archive/photos/a.jpg", ["rust", "broken window", "graffiti"]),
        ("photos/b.jpg", "/archive/photos/b.jpg", ["staircase", "peeling paint"]),
        (SHA1.upper(), SHA1, []),
        ("photos/a.jpg", "/archive/photos/a.jpg", ["door"]),
    ]


def test_a_first_row_that_is_not_a_header_is_data() -> None:
    rows = parse_labels("a.jpg,rust\n", Path("/x"))
    assert len(rows) == 1 and rows[0].tags == ["rust"]


def test_existing_files_match_by_content_hash(tmp_path: Path) -> None:
    (tmp_path / "moved").mkdir()
    photo = tmp_path / "moved" / "renamed.jpg"
    photo.write_bytes(b"same bytes as when analysed")
    sha = hashlib.sha256(photo.read_bytes()).hexdigest()
    labels = tmp_path / "labels.csv"
    labels.write_text("moved/renamed.jpg,rust\n", encoding="utf-8")
    [row] = read_labels(labels)
    assert row.key == sha
    doc: Body = {
        "models": [{"name": "A", "kind": "tagger"}],
        "images": [
            {"path": "/old/place.jpg", "sha256": sha, "results": {"A": {"status": "ok", "tags": [tag("rust", 0.4)]}}}
        ],
    }
    assert evaluate(doc, [row], Normaliser())["models"][0]["own"]["f1"] == 1.0


def test_bad_labels_files(tmp_path: Path) -> None:
    with pytest.raises(LabelsError, match="labels.csv:2: the first column must name the image"):
        parse_labels("a.jpg,rust\n,rust\n", tmp_path, "labels.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("image,tags\n", encoding="utf-8")
    with pytest.raises(LabelsError, match="no label rows"):
        read_labels(empty)
    with pytest.raises(LabelsError, match="cannot read the labels file"):
        read_labels(tmp_path / "missing.csv")


def test_csv_output_is_one_row_per_model_best_first(result: dict) -> None:
    rows = list(csv.DictReader(io.StringIO(evaluation_csv(result))))
    assert [(r["rank"], r["model"]) for r in rows] == [("1", "A"), ("2", "B"), ("3", "C")]
    assert rows[0]["best_threshold"] == "0.5" and rows[0]["own_precision"] == "0.6"
    assert rows[2]["best_f1"] == ""


def test_mltag_eval_on_a_saved_json_document(tmp_path: Path) -> None:
    saved = tmp_path / "results.json"
    saved.write_text(json.dumps(document()), encoding="utf-8")
    labels = tmp_path / "labels.csv"
    labels.write_text(
        f'image,tags\n{SHA1},"rust, windows, door"\n{SHA2},Graffiti\nelsewhere.jpg,rust\n', encoding="utf-8"
    )
    runner = CliRunner()
    out = runner.invoke(app, ["eval", "--labels", str(labels), "--results", str(saved), "--format", "json"])
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)
    assert [r["model"] for r in got["models"]] == ["A", "B", "C"]
    assert got["models"][0]["best"]["f1"] == pytest.approx(6 / 7, abs=1e-6)
    assert got["unmatched_labels"] == ["elsewhere.jpg"]
    table = runner.invoke(app, ["eval", "--labels", str(labels), "--results", str(saved)])
    assert table.exit_code == 0, table.output
    assert "which model tags" in table.stdout and "0.857" in table.stdout and "elsewhere.jpg" in table.stdout
    bad = runner.invoke(app, ["eval", "--labels", str(tmp_path / "nope.csv"), "--results", str(saved)])
    assert bad.exit_code == 2 and "cannot read the labels file" in bad.output


def test_eval_table_fits_100_columns(result: dict) -> None:
    console = Console(width=100, record=True)
    console.print(evaluation_table(result))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "which model tags my archive best: 2 labelled image(s), 4 true tag(s)" in text
    rows = [line.split() for line in text.splitlines() if line.split()[:1] in (["1"], ["2"], ["3"])]
    # rank, model, images (failed), own P R F1, best threshold, P R F1
    assert rows[0] == ["1", "A", "2", "0.600", "0.750", "0.667", "0.500", "1.000", "0.750", "0.857"]
    assert rows[1][:5] == ["2", "B", "2", "(1", "failed)"] and rows[2][:2] == ["3", "C"]
    assert "1 image(s) in the results have no label: ignored" in text


def test_two_rows_for_one_image_add_up() -> None:
    rows = parse_labels(f"{SHA2},graffiti\n{SHA2},window\n", Path("/x"))
    out = evaluate(document(), rows, Normaliser())
    a = next(r for r in out["models"] if r["model"] == "A")
    # A on image 2: {graffiti, window} vs {graffiti, window}: perfect.
    assert out["true_tags"] == 2 and a["own"]["f1"] == 1.0 and a["own"]["tp"] == 2
