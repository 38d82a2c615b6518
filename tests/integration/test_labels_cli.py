"""`mltag labels import|export` and `mltag eval` on the store's labels, through the CLI, on a store written with
the store's own API (no model runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.images import hash_file
from orchestrator.store import CellMeta, ResultStore

TAGS = {  # model -> photo -> (tag, score)
    "wd14": {
        "hall": [("broken_windows", 0.9), ("graffiti", 0.4)],
        "stairs": [("stairs", 0.8), ("rust", 0.3)],
        "door": [("door", 0.7), ("rust", 0.6)],
        "yard": [("tree", 0.5)],
    },
    "clip": {
        "hall": [("broken window", 0.6), ("derelict", 0.5)],
        "stairs": [("staircase", 0.7), ("rust", 0.2)],
        "door": [("door", 0.9)],
    },
}


@pytest.fixture()
def archive(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """photos/{hall,stairs,door,yard}.jpg and two taggers' cells in store.sqlite (outside the photos)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    images = {}
    for name in ("hall", "stairs", "door", "yard"):
        (folder / f"{name}.jpg").write_bytes(f"{name} bytes".encode())
        images[name] = hash_file(folder / f"{name}.jpg")
    path = tmp_path / "store.sqlite"
    db = ResultStore(path)
    db.begin_run("run1", 0.0, {}, ["analyze"])
    db.record_images("run1", images.values())
    for model, by_image in TAGS.items():
        meta = CellMeta(options_key="k", kind="tagger", revision="r", device="cpu", load_s=1.0)
        for name, tags in by_image.items():
            db.put_cell(
                "run1",
                images[name].sha256,
                model,
                {"status": "ok", "inference_s": 0.25, "tags": [{"name": n, "score": s} for n, s in tags]},
                meta,
            )
    db.finish_run("run1", 1.0)
    db.close()
    (tmp_path / "labels.csv").write_text(
        'image,tags\nphotos/hall.jpg,"broken window, abandoned"\n'
        "photos/stairs.jpg,staircase,rust\n# a comment\nphotos/gone.jpg,rust\n",
        encoding="utf-8",
    )
    return folder, path, {name: img.sha256 for name, img in images.items()}


def _eval(store: Path, *extra: str) -> dict:
    out = CliRunner().invoke(app, ["eval", "--store", str(store), "--format", "json", *extra])
    assert out.exit_code == 0, out.output
    return json.loads(out.stdout)


def test_import_export_round_trip_and_eval_on_the_stored_labels(
    archive: tuple[Path, Path, dict[str, str]], tmp_path: Path
) -> None:
    folder, store, sha = archive
    runner = CliRunner()
    imported = runner.invoke(
        app, ["labels", "import", str(tmp_path / "labels.csv"), "--store", str(store), "--who", "tester"]
    )
    assert imported.exit_code == 0, imported.output
    assert "2 photo(s) labelled and marked done" in imported.stderr and "not in the store" not in imported.stderr
    assert "skipped 1 row(s)" in imported.stderr and "photos/gone.jpg" in imported.stderr
    db = ResultStore(store)
    hall = db.labels_of(sha["hall"])
    assert hall.done and hall.done_by == "tester" and hall.yes_tags == ["abandoned", "broken window"]
    # the door photo labelled as `mltag serve` would: verdicts, then done
    db.set_label(sha["door"], "door", True, "ann")
    db.set_label(sha["door"], "rust", False, "ann")
    db.mark_done(sha["door"], "ann")
    db.set_label(sha["stairs"], "stairs", False, "ann")  # a no verdict changes nothing exported
    db.set_label(sha["yard"], "tree", True, "ann")  # not done: not exported, not evaluated
    db.import_labels({"f" * 64: ["rust"]}, "ann")  # a photo the store has no results for
    db.close()

    exported = tmp_path / "exported.csv"
    out = runner.invoke(app, ["labels", "export", "--out", str(exported), "--store", str(store)])
    assert out.exit_code == 0, out.output
    expected = {
        sha["hall"]: "abandoned, broken window",
        sha["stairs"]: "rust, staircase",
        sha["door"]: "door",
        "f" * 64: "rust",
    }
    lines = exported.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "image,tags"
    assert sorted(lines[1:]) == sorted(f'{s},"{t}"' if "," in t else f"{s},{t}" for s, t in expected.items())

    # the export read back into another store gives the same export
    other = tmp_path / "other.sqlite"
    ResultStore(other).close()
    into_other = runner.invoke(app, ["labels", "import", str(exported), "--store", str(other)])
    assert into_other.exit_code == 0 and "4 of them are not in the store yet" in into_other.stderr
    again = runner.invoke(app, ["labels", "export", "--store", str(other)])
    assert again.exit_code == 0 and again.stdout == exported.read_text(encoding="utf-8")

    stored = _eval(store)
    from_csv = _eval(store, "--labels", str(exported))
    assert stored == from_csv, "eval without --labels is eval with the exported CSV"
    assert stored["labelled"] == 3 and stored["unlabelled"] == 1 and stored["unmatched_labels"] == ["f" * 64]
    assert stored["leader"] is not None and "intervals" in stored["models"][0]
    clip = next(m for m in stored["models"] if m["model"] == "clip")
    # clip: hall {broken window, derelict} vs {broken window, abandoned}: TP 1 FP 1 FN 1; stairs {staircase, rust}
    # vs {staircase, rust}: TP 2; door {door} vs {door}: TP 1 -> P 4/5, R 4/5
    assert (clip["own"]["tp"], clip["own"]["fp"], clip["own"]["fn"]) == (4, 1, 1)


def test_eval_without_labels_says_how_to_get_some(archive: tuple[Path, Path, dict[str, str]]) -> None:
    _, store, _ = archive
    out = CliRunner().invoke(app, ["eval", "--store", str(store)])
    assert out.exit_code == 2
    assert "no labelled photos in the results store" in out.output and "mltag labels import" in out.output
    out = CliRunner().invoke(app, ["eval", "--results", str(store)])
    assert out.exit_code == 2 and "--results FILE needs --labels FILE" in out.output


def test_import_of_a_file_naming_nothing_is_refused(archive: tuple[Path, Path, dict[str, str]], tmp_path: Path) -> None:
    _, store, _ = archive
    bad = tmp_path / "bad.csv"
    bad.write_text("nowhere/a.jpg,rust\n", encoding="utf-8")
    out = CliRunner().invoke(app, ["labels", "import", str(bad), "--store", str(store)])
    assert out.exit_code == 2 and "none of the 1 row(s)" in out.output
    assert ResultStore(store).done_sha256s() == set()


def test_eval_on_stored_labels_under_paths(archive: tuple[Path, Path, dict[str, str]], tmp_path: Path) -> None:
    folder, store, sha = archive
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.jpg").write_bytes(b"x bytes")
    db = ResultStore(store)
    x = hash_file(other / "x.jpg")
    db.record_images("run1", [x])
    db.put_cell("run1", x.sha256, "wd14", {"status": "ok", "tags": []}, CellMeta(options_key="k", kind="tagger"))
    for photo in (sha["hall"], x.sha256):
        db.set_label(photo, "rust", True, "ann")
        db.mark_done(photo, "ann")
    db.close()
    under = _eval(store, str(folder))
    assert under["labelled"] == 1 and under["unmatched_labels"] == [], "a label outside PATHS is not unmatched"
    assert _eval(store)["labelled"] == 2
    out = CliRunner().invoke(app, ["eval", "--store", str(store), str(folder / "stairs.jpg")])
    assert out.exit_code == 2 and "none of the labelled photo(s) in the results store" in out.output
    assert "stairs.jpg: give other PATHS" in " ".join(out.output.split())
