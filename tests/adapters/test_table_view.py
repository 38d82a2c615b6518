"""The terminal table as the plan draws it, end to end: tiny random clip, wd14 and florence2 on
samples/chelsea.png through the real CLI (`mltag analyze ... --show-matrix --show-timing
--show-confidence cat`), then `mltag report` from the same store with --consensus-min 1.

Random models' tags are noise, so this checks the views, not the tags: the header, each box's
time / tag count / kind badge, SUMMARY, CONSENSUS (k+ models), the per-image matrix with its marks,
counts and stars, the confidence bars with N/A reasons, and the TOTAL row of the timing table.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.paths import PROJECT_ROOT
from tests.support import mltag

pytestmark = pytest.mark.adapter


def test_analyze_prints_the_plan_s_table(tiny_model: Callable[[str], Path], tmp_path: Path) -> None:
    weights = [
        f"--weights=clip={tiny_model('clip_zeroshot')}",
        f"--weights=wd14={tiny_model('wd14')}",
        f"--weights=florence2={tiny_model('florence2')}",
    ]
    store = str(tmp_path / "results.sqlite")
    photo = str(PROJECT_ROOT / "samples" / "chelsea.png")
    run = mltag(
        "analyze",
        photo,
        "--models",
        "clip,wd14,florence2",
        "--show-matrix",
        "--show-timing",
        "--show-confidence",
        "cat",
        *weights,
        "--offline",
        "--device",
        "cpu",
        "--store",
        store,
    )
    assert run.returncode in (0, 1), run.stderr  # 1: a tiny random captioner may say nothing (no_tags)
    text = run.stdout
    # the header: the photo and the models loaded
    assert re.search(r"ML TAG ANALYZER - \S*chelsea\.png .* 3 models loaded", text), text[:400]
    # each box's title: time in ms, tag count, and the kind (or the failure) as a badge
    assert re.search(r"clip \(\d+ms, 220 terms\) ★ ZERO-SHOT", text)
    assert re.search(r"wd14 \(\d+ms, \d+ tags?\) ★ PURE TAGGER", text)
    assert re.search(r"florence2 \((\d+ms|\d+\.\d\ds)(, \d+ tags?)?\) ★ (CAPTIONER|NO TAGS)", text)
    # the image's SUMMARY, CONSENSUS with its cut-off (3/4 of the models that answered), agreement
    summary = re.search(r"SUMMARY: (\d+) unique tags across (\d) models", text)
    assert summary and int(summary.group(1)) > 0
    answered = int(summary.group(2))
    k = -(-3 * answered // 4)
    assert f"CONSENSUS ({k}+ models): " in text and "MODEL AGREEMENT: " in text
    # the per-image matrix: a mark per model, n/M per tag
    matrix = text[text.index("TAG AGREEMENT MATRIX") :]
    rows = [line for line in matrix.splitlines()[3:] if re.search(rf"\d/{answered}", line)]
    assert rows and all("✓" in row for row in rows)
    # the confidence bars: "cat" is in neither closed vocabulary; florence2 says why it has none
    bars = text[text.index('CONFIDENCE BY MODEL: "cat"') :]
    assert re.search(r"clip:\s+N/A\s+\(not in vocabulary\)", bars)
    assert re.search(r"florence2:\s+(N/A\s+\((not in output|no_tags)\)|\d\.\d\d [█░]{24}  \(extracted\))", bars)
    # the timing table's TOTAL row: load, warm-up, inference, total
    assert re.search(r"^TOTAL\s+\S+s\s+\S+s\s+\S+s\s+\S+s\s+3$", text, re.MULTILINE), text[-3000:]
    assert re.search(r"SUMMARY: \d+ unique tags across \d models \| 1 image\(s\) \| total time: \S+s", text)

    # from the store, no model run: a cut-off of 1 stars every compared tag
    report = mltag("report", photo, "--store", store, "--show-matrix", "--consensus-min", "1", "--top", "5")
    assert report.returncode == 0, report.stderr
    assert re.search(rf"CONSENSUS \(1\+ models\): \S.* 1/{answered} ", report.stdout)
    starred = [line for line in report.stdout.splitlines() if re.search(rf"\d/{answered} ★", line)]
    assert len(starred) == 5, report.stdout  # --top 5 rows shown, every one a consensus tag
    assert "more tag(s) compared, not shown (--top)" in report.stdout
