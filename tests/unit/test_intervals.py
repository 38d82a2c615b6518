"""Bootstrap intervals over photos (orchestrator/compare/intervals.py) through `evaluate`, and the packed sums
checked against plain ones."""

from __future__ import annotations

import csv
import io
import random
from typing import Any

import pytest
from rich.console import Console

from orchestrator.compare.evaluate import evaluate
from orchestrator.compare.intervals import Series, bootstrap, metrics, percentile
from orchestrator.compare.normalise import Normaliser
from orchestrator.document import Body, Cell, ImageEntry, Tag
from orchestrator.report.evaluation_view import evaluation_table
from orchestrator.report.flat import evaluation_csv

VOCAB = [f"tag{i}" for i in range(12)]


def archive(photos: int, accuracy: dict[str, float], seed: int = 7) -> tuple[Body, dict[str, set[str]]]:
    """`photos` photos with 2-4 true tags each; a model gets each true tag right with its `accuracy` and adds
    a wrong tag with probability 1 - accuracy; scores are random, so the best threshold varies too."""
    rng = random.Random(seed)
    images: list[ImageEntry] = []
    labels = {}
    for i in range(photos):
        sha = f"{i:064x}"
        truth = set(rng.sample(VOCAB, rng.randint(2, 4)))
        labels[sha] = truth
        results: dict[str, Cell] = {}
        for model, acc in accuracy.items():
            tags: list[Tag] = [{"name": t, "score": rng.uniform(0.3, 1.0)} for t in sorted(truth) if rng.random() < acc]
            if rng.random() > acc:
                tags.append({"name": rng.choice(sorted(set(VOCAB) - truth)), "score": rng.uniform(0.1, 0.8)})
            results[model] = {"status": "ok", "tags": tags}
        images.append({"path": f"p{i}.jpg", "sha256": sha, "results": results})
    return {"models": [{"name": m, "kind": "tagger"} for m in accuracy], "images": images}, labels


def width(result: dict[str, Any], threshold: str, metric: str) -> float:
    low, high = result["intervals"][threshold][metric]
    return float(high - low)


def test_intervals_contain_the_point_estimates() -> None:
    document, labels = archive(120, {"A": 0.9, "B": 0.7, "C": 0.5})
    evaluation = evaluate(document, labels, Normaliser())
    assert evaluation["bootstrap"] == {"resamples": 1000, "seed": 0, "confidence": 0.95, "unit": "photo"}
    for result in evaluation["models"]:
        for threshold in ("own", "best"):
            for metric in ("precision", "recall", "f1"):
                low, high = result["intervals"][threshold][metric]
                assert low <= result[threshold][metric] <= high, (result["model"], threshold, metric)
                assert 0 < high - low < 0.3


def test_intervals_shrink_with_more_photos() -> None:
    few = evaluate(*archive(40, {"A": 0.8, "B": 0.6}), Normaliser())
    many = evaluate(*archive(640, {"A": 0.8, "B": 0.6}), Normaliser())
    for small, large in zip(few["models"], many["models"], strict=True):
        assert small["model"] == large["model"]
        for threshold in ("own", "best"):
            for metric in ("precision", "recall", "f1"):
                # 16x the photos: about a quarter of the width; a half leaves room for sampling noise
                assert width(large, threshold, metric) < 0.5 * width(small, threshold, metric)


def test_the_same_seed_gives_the_same_numbers_whatever_the_photo_order() -> None:
    document, labels = archive(60, {"A": 0.8, "B": 0.7})
    first = evaluate(document, labels, Normaliser(), seed=3)
    reordered: Body = {**document, "images": list(reversed(document["images"]))}
    assert evaluate(reordered, labels, Normaliser(), seed=3) == first
    other = evaluate(document, labels, Normaliser(), seed=4)
    assert other["models"][0]["intervals"] != first["models"][0]["intervals"], "another seed, other resamples"
    assert [r["own"] for r in other["models"]] == [r["own"] for r in first["models"]], "point estimates stay"


def test_a_clear_leader_is_ahead_and_a_tie_is_not() -> None:
    clear = evaluate(*archive(80, {"good": 0.95, "poor": 0.6}), Normaliser())
    assert clear["leader"]["model"] == "good" and clear["leader"]["runner_up"] == "poor"
    assert clear["leader"]["ahead"] and clear["leader"]["interval"][0] > 0
    assert clear["leader"]["interval"][0] <= clear["leader"]["difference"] <= clear["leader"]["interval"][1]
    # two models equally good, with different errors: whichever ranks first is not ahead beyond noise
    tie = evaluate(*archive(80, {"one": 0.8, "two": 0.8}), Normaliser())
    assert not tie["leader"]["ahead"] and tie["leader"]["interval"][0] < 0 < tie["leader"]["interval"][1]
    # identical predictions: the difference is 0 on every resample, not ahead
    document, labels = archive(30, {"same": 0.8})
    for image in document["images"]:
        image["results"]["copy"] = image["results"]["same"]
    document["models"].append({"name": "copy", "kind": "tagger"})
    twin = evaluate(document, labels, Normaliser())
    assert twin["leader"]["interval"] == [0.0, 0.0] and not twin["leader"]["ahead"]


def test_packed_sums_are_the_plain_sums() -> None:
    """The bit-field packing against the plain computation on the same resamples (same seeded draws)."""
    rng = random.Random(5)
    n = 37
    series = [
        Series(
            m, t, [(rng.randint(0, 3), rng.randint(0, 900 if m == "wide" else 4), rng.randint(0, 2)) for _ in range(n)]
        )
        for m in ("wide", "narrow")
        for t in ("own", "best")
    ]
    got = bootstrap(series, ("narrow", "wide"), resamples=200, seed=11)
    draws = random.Random(11)
    values: dict[tuple[str, str], list[list[float]]] = {(s.model, s.threshold): [[], [], []] for s in series}
    diffs = []
    for _ in range(200):
        idx = draws.choices(range(n), k=n)
        f1 = {}
        for s in series:
            summed = [sum(s.counts[i][k] for i in idx) for k in range(3)]
            for slot, v in zip(values[(s.model, s.threshold)], metrics(*summed), strict=True):
                slot.append(v)
            f1[(s.model, s.threshold)] = metrics(*summed)[2]
        diffs.append(f1[("narrow", "best")] - f1[("wide", "best")])
    for (model, threshold), slots in values.items():
        for name, drawn in zip(("precision", "recall", "f1"), slots, strict=True):
            drawn.sort()
            assert got["intervals"][model][threshold][name] == [
                round(percentile(drawn, 0.025), 6),
                round(percentile(drawn, 0.975), 6),
            ]
    diffs.sort()
    assert got["difference"]["interval"] == [round(percentile(diffs, 0.025), 6), round(percentile(diffs, 0.975), 6)]


def test_edge_cases() -> None:
    assert bootstrap([]) == {"intervals": {}, "difference": None}
    one = bootstrap([Series("A", "own", [(2, 1, 0)])], resamples=10)
    assert one["intervals"]["A"]["own"]["precision"] == [pytest.approx(2 / 3, abs=1e-6)] * 2
    with pytest.raises(ValueError, match="same photos"):
        bootstrap([Series("A", "own", [(1, 0, 0)]), Series("B", "own", [])])
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    document, labels = archive(10, {"A": 0.8})
    single = evaluate(document, labels, Normaliser(), resamples=0)
    assert "intervals" not in single["models"][0] and "leader" not in single
    assert evaluate(document, labels, Normaliser())["leader"] is None, "one model: no runner-up"


def test_table_and_csv_show_the_intervals_and_the_verdict() -> None:
    evaluation = evaluate(*archive(80, {"good": 0.95, "poor": 0.6}), Normaliser())
    console = Console(width=100, record=True)
    console.print(evaluation_table(evaluation))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    good = evaluation["models"][0]
    low, high = good["intervals"]["best"]["f1"]
    assert f"{low:.2f}–{high:.2f}".replace("0.", ".") in text
    assert "good leads poor by " in text and "ahead beyond noise" in text and "NOT ahead" not in text
    rows = list(csv.DictReader(io.StringIO(evaluation_csv(evaluation))))
    assert [r["model"] for r in rows] == ["good", "poor"]
    assert float(rows[0]["best_f1_lo"]) == low and float(rows[0]["best_f1_hi"]) == high
    assert rows[0]["ahead_beyond_noise"] == "yes" and rows[1]["ahead_beyond_noise"] == ""
    assert float(rows[0]["lead_lo"]) == evaluation["leader"]["interval"][0] > 0
