from __future__ import annotations

import csv
import io

from orchestrator.report.flat import to_csv


def doc() -> dict:
    return {"models": [{"name": "m", "revision": "r" * 40}],
            "images": [{"path": "a.jpg", "sha256": "0" * 64, "results": {
                "m": {"status": "ok", "caption": "=HYPERLINK(\"http://x\")", "inference_s": 0.1,
                      "tags": [{"name": "+rust", "score": 0.9}, {"name": "@decay", "score": 0.2, "estimated": True},
                               {"name": "-graffiti", "score": 0.5}]}}},
                       {"path": "b.jpg", "sha256": "1" * 64, "results": {"m": {"status": "crashed", "message": "x"}}}]}


def test_csv_rows_and_formula_escaping() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(doc()))))
    assert len(rows) == 4  # 3 tags + one row for the crashed cell
    assert [r["tag"] for r in rows[:3]] == ["'+rust", "'@decay", "'-graffiti"]
    assert rows[0]["caption"].startswith("'=")
    assert rows[1]["estimated"] == "True" and rows[3]["status"] == "crashed" and rows[3]["tag"] == ""


def test_csv_threshold() -> None:
    rows = list(csv.DictReader(io.StringIO(to_csv(doc(), threshold=0.4))))
    assert [r["tag"] for r in rows if r["image"] == "a.jpg"] == ["'+rust", "'-graffiti"]
