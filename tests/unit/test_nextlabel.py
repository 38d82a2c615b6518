"""What to label next (orchestrator/compare/nextlabel.py): disputed photos first, round-robin over folders."""

from __future__ import annotations

import random
from typing import Any

from orchestrator.compare.evaluate import evaluate
from orchestrator.compare.nextlabel import best_thresholds, disagreement, label_queue, leading_models
from orchestrator.compare.normalise import Normaliser
from orchestrator.document import Cell, ImageEntry

NORM = Normaliser()


def cell(*tags: str, score: float = 0.9) -> Cell:
    return {"status": "ok", "tags": [{"name": t, "score": score} for t in tags]}


def photo(path: str, n: int, a: list[str], b: list[str], c: list[str] | None = None) -> ImageEntry:
    results = {"A": cell(*a), "B": cell(*b), "C": cell(*(c if c is not None else a))}
    return {"path": path, "sha256": f"{n:064x}", "results": results}


def archive() -> list[ImageEntry]:
    """Two folders; A and B dispute 3, 2, 1 or 0 tags."""
    return [
        photo("/p/x/1.jpg", 1, ["rust", "door", "stairs"], ["rust"]),  # x: 2 disputed
        photo("/p/x/2.jpg", 2, ["rust", "door", "stairs", "sky"], ["rust"]),  # x: 3 disputed
        photo("/p/x/3.jpg", 3, ["rust"], ["rust"]),  # x: agreed
        photo("/p/y/4.jpg", 4, ["tree"], ["bush"]),  # y: 2 disputed
        photo("/p/y/5.jpg", 5, ["tree", "sky"], ["tree"]),  # y: 1 disputed
        photo("/p/y/6.jpg", 6, [], []),  # y: agreed (nothing)
        {"path": "/p/z/copy.jpg", "sha256": f"{2:064x}", "duplicate_of": "/p/x/2.jpg", "results": {}},
    ]


def order(queue: list[Any]) -> list[int]:
    return [int(c.sha256, 16) for c in queue]


def test_disputed_photos_first_round_robin_over_folders() -> None:
    queue = label_queue(archive(), set(), NORM, ["A", "B"])
    # x's best (3 disputed) beats y's best (2): x, y, x, y; then the agreed ones, x before y (sha256 3 < 6)
    assert order(queue) == [2, 4, 1, 5, 3, 6]
    assert [c.disputed for c in queue[:4]] == [3, 2, 2, 1] and queue[0].folder == "/p/x"
    assert queue[0].agreement == 0.25  # {rust, door, stairs, sky} vs {rust}
    assert "/p/z/copy.jpg" not in [c.path for c in queue], "a duplicate is the same photo"


def test_labelled_photos_are_left_out_and_limit_holds() -> None:
    queue = label_queue(archive(), {f"{2:064x}", f"{4:064x}"}, NORM, ["A", "B"], limit=3)
    assert order(queue) == [1, 5, 3]
    assert len(label_queue(archive(), set(), NORM, ["A", "B"], limit=1)) == 1


def test_the_same_queue_whatever_the_reading_order() -> None:
    images = [
        photo(
            f"/p/f{i % 5}/{i}.jpg",
            i,
            random.Random(i).sample(["a", "b", "c", "d"], 2),
            random.Random(-i).sample(["a", "b", "c", "d"], 2),
        )
        for i in range(200)
    ]
    first = label_queue(images, set(), NORM, ["A", "B"], limit=40)
    shuffled = list(images)
    random.Random(3).shuffle(shuffled)
    assert label_queue(shuffled, set(), NORM, ["A", "B"], limit=40) == first
    folders = [c.folder for c in first[:10]]
    assert all(folders.count(f) == 2 for f in set(folders)) and len(set(folders)) == 5, "spread over the folders"
    # a small limit keeps only the best per folder, and the result is the head of the longer queue
    assert label_queue(images, set(), NORM, ["A", "B"], limit=7) == first[:7]


def test_only_the_leaders_count_and_thresholds_apply() -> None:
    image = photo("/p/1.jpg", 1, ["rust"], ["rust"], c=["rust", "door", "sky"])
    assert disagreement(image, ["A", "B"], NORM) == (0, 1.0)
    assert disagreement(image, ["A", "B", "C"], NORM)[0] == 2
    image["results"]["B"] = {"status": "ok", "tags": [{"name": "rust", "score": 0.4}]}
    assert disagreement(image, ["A", "B"], NORM, {"B": 0.5}) == (1, 0.0), "B's rust is under its best threshold"
    image["results"]["B"] = {"status": "timeout"}
    assert disagreement(image, ["A", "B"], NORM) == (0, 1.0), "a failed cell says nothing about the tags"


def test_leaders_and_thresholds_come_from_the_evaluation() -> None:
    images = archive()[:6]
    labels = {f"{n:064x}": {"rust", "door", "stairs"} for n in (1, 2, 3)}
    evaluation = evaluate({"models": [], "images": images}, labels, NORM, resamples=0)
    assert leading_models(evaluation, ["A", "B", "C"], k=2) == [m["model"] for m in evaluation["models"][:2]]
    assert leading_models(None, ["A", "B", "C"]) == ["A", "B", "C"], "nothing labelled: every model"
    assert best_thresholds(evaluation) == {m["model"]: m["best"]["threshold"] for m in evaluation["models"]}
