from __future__ import annotations

import csv
import io
import json

import jsonschema
import pytest
from rich.console import Console

from orchestrator.compare import compare
from orchestrator.document import Body, Cell, Document, ModelEntry
from orchestrator.report.comparison_views import Views
from orchestrator.report.flat import to_csv, to_json
from orchestrator.report.table import render
from tests.support import SCHEMA


def doc() -> Body:
    return {
        "models": [{"name": "m", "revision": "r" * 40}],
        "images": [
            {
                "path": "a.jpg",
                "sha256": "0" * 64,
                "results": {
                    "m": {
                        "status": "ok",
                        "caption": '=HYPERLINK("http://x")',
                        "inference_s": 0.1,
                        "tags": [
                            {"name": "+rust", "score": 0.9},
                            {"name": "@decay", "score": 0.2, "estimated": True},
                            {"name": "-graffiti", "score": 0.5},
                        ],
                    }
                },
            },
            {"path": "b.jpg", "sha256": "1" * 64, "results": {"m": {"status": "crashed", "message": "x"}}},
        ],
    }


def test_csv_rows_and_formula_escaping() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(doc()))))
    assert len(rows) == 4  # 3 tags + one row for the crashed cell
    assert [r["tag"] for r in rows[:3]] == ["'+rust", "'@decay", "'-graffiti"]
    assert rows[0]["caption"].startswith("'=")
    assert rows[1]["estimated"] == "True" and rows[3]["status"] == "crashed" and rows[3]["tag"] == ""


def test_csv_threshold() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(doc(), threshold=0.4))))
    assert [r["tag"] for r in rows if r["image"] == "a.jpg"] == ["'+rust", "'-graffiti"]


# -- the comparison's views (report/comparison_views.py via report/table.py) ------------------------------


def full_document() -> Document:
    """A schema-valid document: wd14 and clip tag, florence2 captions (estimated tags), broken never runs."""

    def model(name: str, kind: str, load_s: float | None) -> ModelEntry:
        return {
            "name": name,
            "kind": kind,
            "adapter": f"runners.{name}",
            "env": "onnx",
            "hub_id": f"org/{name}",
            "revision": "a" * 40,
            "status": "ok" if load_s else "failed",
            "device": "cpu",
            "load_s": load_s,
            "warmup_s": 0.5 if load_s else None,
            "notes": [],
            "crashes": 0,
            "timeouts": 0,
        }

    def cells(i: int) -> dict[str, Cell]:
        return {
            "wd14": {
                "status": "ok",
                "inference_s": 0.1 * (i + 1),
                "tags": [
                    {"name": "broken_windows", "score": 0.9},
                    {"name": "graffiti", "score": 0.6 - i / 10},
                    {"name": "general", "score": 0.95, "category": "rating"},
                ],
            },
            "clip": {
                "status": "ok",
                "inference_s": 0.4,
                "tags": [{"name": "broken window", "score": 0.5}, {"name": "peeling paint", "score": 0.3}],
            },
            "florence2": {
                "status": "ok",
                "inference_s": 2.0,
                "caption": "Peeling paint and broken windows.",
                "tags": [
                    {"name": "peeling paint", "score": 0.75, "estimated": True},
                    {"name": "broken window", "score": 0.6, "estimated": True},
                ],
            },
            "a-model-with-a-rather-long-name": {"status": "timeout", "message": "no answer in 60 s"},
        }

    return {
        "schema_version": 1,
        "mltag_version": "0.1.0",
        "run_id": "r1",
        "started": "2026-01-01T00:00:00",
        "duration_s": 3.0,
        "options": {"threshold": None, "top": 5},
        "models": [
            model("wd14", "tagger", 1.2),
            model("clip", "zero-shot", 3.4),
            model("florence2", "captioner", 9.9),
            model("a-model-with-a-rather-long-name", "tagger", None),
        ],
        "images": [
            {"path": f"photos/room-{i}.jpg", "sha256": f"{i + 1:x}" * 64, "size_bytes": 10, "results": cells(i)}
            for i in range(3)
        ],
    }


def rendered(document: Document, views: Views) -> str:
    console = Console(width=100, record=True)
    render(document, console, views)
    return console.export_text()


def test_table_report_with_every_view_fits_100_columns() -> None:
    doc = full_document()
    doc["comparison"] = compare(doc, top_k=5)
    text = rendered(doc, Views(top=5, matrix=True, timing=True, confidence=["Broken_Windows", "grafiti"]))
    assert max(len(line) for line in text.splitlines()) <= 100
    # the summary: consensus with the agreement figure and its definition
    assert "consensus over 3 image(s)" in text and "model agreement: " in text
    assert "mean pairwise Jaccard" in text and "consensus score = per image" in text
    assert f"model agreement: {doc['comparison']['folder']['agreement']:.2f}" in text
    first = doc["comparison"]["folder"]["consensus"][0]
    assert first["tag"] == "broken window" and first["n_models"] == 3
    # per image, as the plan draws it: header, badges, SUMMARY, CONSENSUS (k+), agreement
    assert "ML TAG ANALYZER - photos/room-0.jpg" in text and "3 models loaded (of 4)" in text
    assert "wd14 (100ms, 2 tags) ★ PURE TAGGER" in text and "clip (400ms, 2 terms) ★ ZERO-SHOT" in text
    assert "florence2 (2.00s, 2 tags) ★ CAPTIONER" in text and "★ TIMEOUT" in text
    assert "SUMMARY: 3 unique tags across 3 models (1 without a result)" in text
    assert "CONSENSUS (3+ models): broken window 3/3 2.00~" in text  # 3/4 of 3 answering, rounded up
    assert "MODEL AGREEMENT: 56%" in text
    # the per-image matrix: marks, n/M and the star for consensus tags
    assert "TAG AGREEMENT MATRIX" in text
    rows: dict[str, list[str]] = {}  # the first image's matrix (the folder's matrix comes last)
    for line in text.splitlines():
        if line.startswith(("broken window ", "peeling paint ")):
            rows.setdefault(" ".join(line.split()[:2]), line.split()[2:])
    assert rows["broken window"][:5] == ["✓", "✓", "✓", "·", "3/3"] and rows["broken window"][5] == "★"
    assert rows["peeling paint"] == ["-", "✓", "✓", "·", "2/3"]
    # per-image confidence bars, 24 wide, N/A with the reason, extracted and zero-shot scores marked
    assert 'CONFIDENCE BY MODEL: "broken window"' in text
    assert "wd14:" in text and "0.90 ██████████████████████░░" in text
    assert "(zero-shot)" in text and "(extracted)" in text and "N/A  (timeout)" in text
    assert "N/A  (not in output)" in text
    assert "model x model agreement" in text and "cells by status" in text and "timeout 3" in text
    # --show-matrix: tag x model with counts; estimated cells marked
    assert "agreement matrix" in text and "3 (0.90)" in text and "(0.60~)" in text
    # --show-timing: wd14 .1/.2/.3 s -> mean .2, p95 .29, 3 images / .6 s = 5 per second
    assert "timing per model" in text
    # load, warm-up, inference (all images), total, mean, p50, p95: milliseconds under a second
    assert any(
        line.split() == ["wd14", "1.20s", "500ms", "600ms", "2.30s", "200ms", "200ms", "290ms", "5.00", "3"]
        for line in text.splitlines()
    )
    assert any(line.split()[:5] == ["TOTAL", "14.50s", "1.50s", "7.80s", "23.80s"] for line in text.splitlines())
    assert "SUMMARY: 3 unique tags across 3 models | 3 image(s) | total time: 23.80s" in text
    # --show-confidence: bars, the normalised name, an unknown tag answered with a close match
    assert "confidence for 'broken window' across models (asked: 'Broken_Windows')" in text
    assert "██████████████████████░░" in text and "no model gave 'grafiti'" in text and "close: graffiti" in text
    assert "N/A   (no ok cell: timeout 3)" in " ".join(text.split("  ")) or "(no ok cell: timeout 3)" in text
    assert "general" not in doc["comparison"]["folder"]["confidence"]  # a rating, not content
    assert "~ marks an estimated score" in text


def test_table_report_without_views() -> None:
    doc = full_document()
    text = rendered(doc, Views(top=5))
    assert "room-0.jpg" in text, "the table computes its comparison as the images stream"
    assert "model agreement" in text and "agreement matrix" not in text and "timing per model" not in text
    assert max(len(line) for line in text.splitlines()) <= 100


def test_one_model_summary_says_why_there_is_no_agreement() -> None:
    doc = full_document()
    doc["models"] = doc["models"][:1]
    for image in doc["images"]:
        image["results"] = {"wd14": image["results"]["wd14"]}
    doc["comparison"] = compare(doc)
    text = rendered(doc, Views(top=5))
    assert "model agreement: - (only one model: agreement needs two)" in text
    assert "model x model" not in text


def test_json_with_the_comparison_validates_against_the_schema() -> None:
    doc = full_document()
    jsonschema.validate(doc, SCHEMA)
    doc["comparison"] = compare(doc, top_k=2, threshold=0.1, synonyms={"graffiti": "tagging"})
    jsonschema.validate(json.loads(to_json(doc)), SCHEMA)
    broken = json.loads(to_json(doc))
    broken["comparison"]["folder"]["consensus"][0]["n_models"] = "three"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCHEMA)


def test_csv_escapes_every_formula_start_and_carries_the_revision() -> None:
    doc = full_document()
    doc["images"][0]["results"]["wd14"]["tags"] = [{"name": n, "score": 0.5} for n in ("=1+1", "+x", "-y", "@z", "ok")]
    rows = list(csv.DictReader(io.StringIO(to_csv(doc))))
    first = [r for r in rows if r["image"] == "photos/room-0.jpg" and r["model"] == "wd14"]
    assert [r["tag"] for r in first] == ["'=1+1", "'+x", "'-y", "'@z", "ok"]
    assert all(r["revision"] == "a" * 40 and r["status"] == "ok" for r in first)
    timeout = [r for r in rows if r["model"] == "a-model-with-a-rather-long-name"]
    assert len(timeout) == 3 and all(r["tag"] == "" and r["status"] == "timeout" for r in timeout)


@pytest.mark.parametrize("top, threshold", [(5, None), (0, 0.2)])
def test_streamed_json_equals_the_document_and_its_comparison(top: int, threshold: float | None) -> None:
    """write_json streams images and spools the per-image comparison: the result is the same document
    as the one built in memory, with the same comparison, and it validates."""
    from orchestrator.compare import Comparison
    from orchestrator.document import Results
    from orchestrator.report.flat import write_json, write_jsonl

    document = full_document()
    document["images"].append(
        {**document["images"][0], "path": "copy.jpg", "duplicate_of": document["images"][0]["path"]}
    )
    buf = io.StringIO()
    write_json(Results.of(document), buf, Comparison(document["models"], top, threshold))
    streamed = json.loads(buf.getvalue())
    assert streamed == {**document, "comparison": compare(document, top_k=top, threshold=threshold)}
    jsonschema.validate(streamed, SCHEMA)
    lines = io.StringIO()
    write_jsonl(Results.of(document), lines)
    first, *images = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert images == document["images"] and first["models"] == document["models"]
