"""Labels in the results store (schema v3): verdicts by content hash, done markers, the log, migration."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from orchestrator import store
from orchestrator.compare.evaluate import LabelRow
from orchestrator.errors import LabelsError
from orchestrator.images import hash_file
from orchestrator.store import CellMeta, ResultStore

A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture
def db(tmp_path: Path) -> ResultStore:
    return ResultStore(tmp_path / "results.sqlite")


def test_verdicts_last_write_wins_and_every_write_is_logged(db: ResultStore) -> None:
    first = db.set_label(A, "rust", True, "ann")
    db.set_label(A, "door", False, "ann")
    second = db.set_label(A, "  rust ", False, "bob")  # trimmed: the same tag; bob's write wins
    labels = db.labels_of(A)
    assert list(labels.verdicts) == ["door", "rust"]
    assert labels.verdicts["rust"].yes is False and labels.verdicts["rust"].who == "bob"
    assert second.time >= first.time and labels.yes_tags == [] and not labels.done
    assert [(tag, action, who) for tag, action, who, _ in db.label_log(A)] == [
        ("rust", "yes", "ann"),
        ("door", "no", "ann"),
        ("rust", "no", "bob"),
    ]


def test_undo_and_done_markers(db: ResultStore) -> None:
    db.set_label(A, "rust", True, "ann")
    db.set_label(A, "window", True, "ann")
    assert db.remove_label(A, "window", "ann") and not db.remove_label(A, "window", "ann")
    db.mark_done(A, "ann")
    labels = db.labels_of(A)
    assert labels.done and labels.done_by == "ann" and labels.done_at is not None and labels.yes_tags == ["rust"]
    assert db.done_sha256s() == {A}
    assert db.mark_undone(A, "bob") and not db.mark_undone(A, "bob")
    assert not db.labels_of(A).done and db.labels_of(A).yes_tags == ["rust"], "undone keeps the verdicts"
    assert [action for _, action, _, _ in db.label_log(A)] == ["yes", "yes", "removed", "done", "undone"]
    assert db.labels_of(B).verdicts == {} and not db.labels_of(B).done


def test_label_rows_are_the_done_photos_with_their_yes_tags(db: ResultStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("orchestrator.store.db.READ_CHUNK", 2)  # several chunks
    shas = [f"{i:064x}" for i in range(5)]
    for i, sha in enumerate(shas):
        db.set_label(sha, "rust", True, "ann")
        db.set_label(sha, "door", i % 2 == 0, "ann")
        if i != 3:
            db.mark_done(sha, "ann")
    db.mark_done(C, "ann")  # done with no yes tag: "nothing to tag here"
    rows = list(db.label_rows())
    assert rows == [
        LabelRow(s, s, ["door", "rust"] if i % 2 == 0 else ["rust"]) for i, s in enumerate(shas) if i != 3
    ] + [LabelRow(C, C, [])]


def test_import_makes_the_stored_truth_equal_the_given_sets(db: ResultStore) -> None:
    db.set_label(A, "rust", True, "ann")
    db.set_label(A, "stairs", False, "ann")
    assert db.import_labels({A: ["door", "window"], B: []}, "importer") == 2
    a = db.labels_of(A)
    assert a.done and a.done_by == "importer" and a.yes_tags == ["door", "window"]
    assert a.verdicts["rust"].yes is False, "an earlier yes not in the complete set becomes no"
    assert a.verdicts["stairs"].who == "ann", "earlier no verdicts stay"
    assert db.labels_of(B).done and db.labels_of(B).yes_tags == []


def test_bad_keys_tags_and_names_are_refused(db: ResultStore) -> None:
    with pytest.raises(LabelsError, match="not an image's sha256"):
        db.set_label("photo.jpg", "rust", True, "ann")
    with pytest.raises(LabelsError, match="empty tag"):
        db.set_label(A, "  ", True, "ann")
    with pytest.raises(LabelsError, match="has a comma"):
        db.set_label(A, "rust, door", True, "ann")
    with pytest.raises(LabelsError, match="who recorded it"):
        db.mark_done(A, " ")
    assert db.labels_of(A.upper()).sha256 == A  # hex case does not matter


def test_moved_photo_keeps_its_labels(tmp_path: Path, db: ResultStore) -> None:
    old = tmp_path / "old" / "a.jpg"
    old.parent.mkdir()
    old.write_bytes(b"same photo")
    db.begin_run("run1", 0.0, {}, ["analyze"])
    db.record_images("run1", [hash_file(old)])
    sha = db.image_at(str(old))
    assert sha is not None
    db.set_label(sha, "rust", True, "ann")
    new = tmp_path / "new" / "b.jpg"
    new.parent.mkdir()
    old.rename(new)
    db.record_images("run2", [hash_file(new)])
    assert db.image_at(str(new)) == sha and db.labels_of(sha).yes_tags == ["rust"]


def test_two_writers_on_one_store_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    ResultStore(path).close()
    tabs = [ResultStore(path), ResultStore(path)]  # two connections: two browser tabs' requests

    def label(db: ResultStore, who: str) -> None:
        for i in range(40):
            db.set_label(A, f"tag{i}", who == "ann", who)

    threads = [threading.Thread(target=label, args=(db, who)) for db, who in zip(tabs, ["ann", "bob"], strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    verdicts = ResultStore(path).labels_of(A).verdicts
    assert len(verdicts) == 40
    log = tabs[0].label_log(A)
    assert len(log) == 80, "every write is in the log"
    for tag, verdict in verdicts.items():
        last = [entry for entry in log if entry[0] == tag][-1]
        assert (verdict.who, verdict.yes) == (last[2], last[1] == "yes"), "the last write wins"


def test_a_v2_store_is_migrated_to_v3_and_keeps_its_cells(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "results.sqlite"
    with monkeypatch.context() as m:  # a store written by the mltag before labels
        m.setattr(store.schema, "MIGRATIONS", store.schema.MIGRATIONS[:2])
        old = ResultStore(path)
        old.begin_run("run1", 0.0, {}, ["analyze"])
        old.put_cell("run1", A, "wd14", {"status": "ok", "tags": []}, CellMeta(options_key="k"))
        old.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 2
    assert "labels" not in {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    db = ResultStore(path)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == store.STORE_VERSION  # v3 and every later one
    assert {"labels", "labels_done", "label_log"} <= {
        r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    assert db.cells_of([A]) == {A: {"wd14": {"status": "ok", "tags": []}}}, "cells kept"
    db.set_label(A, "rust", True, "ann")
    db.mark_done(A, "ann")
    assert list(db.label_rows()) == [LabelRow(A, A, ["rust"])]


def test_evaluate_store_live_with_cached_cells_gives_the_cold_numbers(tmp_path: Path, db: ResultStore) -> None:
    from orchestrator.compare.normalise import Normaliser
    from orchestrator.document import Cell
    from orchestrator.store.documents import evaluate_store, model_entries

    db.begin_run("run1", 0.0, {}, ["analyze"])
    images = []
    for i in range(8):
        (tmp_path / f"{i}.jpg").write_bytes(f"photo {i}".encode())
        images.append(hash_file(tmp_path / f"{i}.jpg"))
    db.record_images("run1", images)
    shas = [img.sha256 for img in images]
    for i, sha in enumerate(shas):
        for model, tags in (("A", ["rust", "door"]), ("B", ["rust", "sky"] if i % 2 else ["rust"])):
            db.put_cell(
                "run1",
                sha,
                model,
                {
                    "status": "ok",
                    "tags": [{"name": t, "score": 0.5 + i / 20} for t in tags],
                    "raw": {"scores": [0.1] * 50},
                },
                CellMeta(options_key="k", kind="tagger"),
            )
    db.import_labels({sha: ["rust", "door"] for sha in shas[:4]}, "ann")
    entries = model_entries(db, db.models())
    cache: dict[str, dict[str, Cell]] = {}
    cold = evaluate_store(db, Normaliser())
    assert cold["labelled"] == 4 and cold["unlabelled"] == 4 and cold["leader"] is not None
    assert evaluate_store(db, Normaliser(), models=entries, cache=cache) == cold
    assert set(cache) == set(shas[:4]) and "raw" not in cache[shas[0]]["A"], "only the evaluated part is kept"
    db.set_label(shas[5], "sky", True, "ann")
    db.mark_done(shas[5], "ann")
    live = evaluate_store(db, Normaliser(), models=entries, cache=cache)
    assert live == evaluate_store(db, Normaliser()) and live["labelled"] == 5


def test_queue_from_store_reads_a_bounded_sample_of_unlabelled_photos(tmp_path: Path, db: ResultStore) -> None:
    from orchestrator.compare.nextlabel import label_queue
    from orchestrator.compare.normalise import Normaliser
    from orchestrator.store.documents import from_store, queue_from_store

    db.begin_run("run1", 0.0, {}, ["analyze"])
    images = []
    for i in range(12):
        folder = tmp_path / f"shoot{i % 3}"
        folder.mkdir(exist_ok=True)
        (folder / f"{i}.jpg").write_bytes(f"photo {i}".encode())
        images.append(hash_file(folder / f"{i}.jpg"))
    db.record_images("run1", images)
    vocab = ["rust", "door", "sky", "tree", "stairs"]
    for i, img in enumerate(images):
        for m, model in enumerate(("A", "B", "C")):
            tags = vocab[: 1 + (i * (m + 1)) % 5]
            db.put_cell(
                "run1",
                img.sha256,
                model,
                {"status": "ok", "tags": [{"name": t, "score": 0.9} for t in tags]},
                CellMeta(options_key="k", kind="tagger"),
            )
    done = {images[0].sha256, images[5].sha256}
    for sha in done:
        db.mark_done(sha, "ann")
    everything = label_queue(from_store(db).images(), done, Normaliser(), ["A", "B"], limit=20)
    queue = queue_from_store(db, Normaliser(), ["A", "B"], limit=20)
    assert queue == everything and len(queue) == 10 and not done & {c.sha256 for c in queue}
    first = sorted(img.sha256 for img in images if img.sha256 not in done)[:4]
    sampled = queue_from_store(db, Normaliser(), ["A", "B"], limit=20, sample=4)
    assert sorted(c.sha256 for c in sampled) == first, "only the first 4 unlabelled photos by sha256"
    under = queue_from_store(db, Normaliser(), ["A", "B"], under=[tmp_path / "shoot1"])
    assert {c.folder for c in under} == {str(tmp_path / "shoot1")}
