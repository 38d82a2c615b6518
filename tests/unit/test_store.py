"""The results store on real SQLite files: exact cells, resume, moved files, migrations, threads, documents."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from orchestrator import store
from orchestrator.document import Document
from orchestrator.images import hash_file
from orchestrator.models import envbuild
from orchestrator.run.jobs import RunOptions
from orchestrator.run.pipeline import Analysis
from orchestrator.run.supervisor import Supervisor
from orchestrator.store import CellMeta, ResultStore, StoreError, default_store_path, legacy_stores, options_key
from orchestrator.store.documents import from_store
from tests.support import SCHEMA, spec

KEY = CellMeta(options_key="k1", kind="tagger", revision="r1")


def _db(tmp_path: Path) -> ResultStore:
    db = ResultStore(tmp_path / ".mltag" / "results.sqlite")
    db.begin_run("run1", 0.0, {}, ["analyze"])
    return db


def _image(tmp_path: Path, name: str, content: bytes = b"") -> Any:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content or name.encode())
    return hash_file(path)


def test_cell_round_trip_is_byte_exact(tmp_path: Path) -> None:
    db = _db(tmp_path)
    img = _image(tmp_path, "a.jpg")
    db.record_images("run1", [img])
    cell = {
        "status": "ok",
        "message": "",
        "tags": [{"name": "rust", "score": 0.1 + 0.2, "category": "general"}],
        "caption": "Ein verlassenes Haus — <script>",
        "raw": {"logits": [1e-30, -2.5, 3.000000000000001], "nested": {"ü": None, "list": [True, 0]}},
        "inference_s": 0.012345678901234567,
        "batch_size": 1,
    }
    assert db.put_cell("run1", img.sha256, "wd14", cell, KEY)
    raw = sqlite3.connect(db.path).execute("SELECT cell FROM cells").fetchone()[0]
    assert raw == json.dumps(cell, ensure_ascii=False, separators=(",", ":"))  # every float's exact repr
    assert db.done_statuses("wd14", "k1", [img.sha256]) == {img.sha256: "ok"}
    assert db.cells_of([img.sha256]) == {img.sha256: {"wd14": cell}}


def test_resume_key_follows_what_changes_results(tmp_path: Path) -> None:
    load = {
        "hub_id": "h/m",
        "revision": "a" * 40,
        "local_path": None,
        "dtype": "auto",
        "device": "cpu",
        "options": {"vocabulary": ["rust", "decay"]},
        "warmup": False,
        "offline": True,
    }
    base = options_key("runners.adapters.wd14", load, {"general_threshold": 0.35})
    # the key written before adapters moved to runners/adapters/ (a store of that time stays valid)
    assert base == "975b2aaa2cd08476"  # what the key was for "runners.wd14" before the move
    assert (
        options_key("runners.adapters.wd14", dict(load, device="cuda", warmup=True), {"general_threshold": 0.35})
        == base
    )
    assert options_key("runners.adapters.wd14", dict(load, revision="b" * 40), {"general_threshold": 0.35}) != base
    assert options_key("runners.adapters.wd14", load, {"general_threshold": 0.5}) != base
    assert options_key("runners.adapters.wd14", dict(load, dtype="float16"), {"general_threshold": 0.35}) != base
    assert (
        options_key("runners.adapters.wd14", dict(load, options={"vocabulary": ["rust"]}), {"general_threshold": 0.35})
        != base
    )
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "model.onnx").write_bytes(b"v1")
    local = options_key("runners.adapters.wd14", dict(load, local_path=str(weights)), {"general_threshold": 0.35})
    assert local != base
    (weights / "model.onnx").write_bytes(b"v2 rebuilt")
    assert (
        options_key("runners.adapters.wd14", dict(load, local_path=str(weights)), {"general_threshold": 0.35}) != local
    )


def test_done_statuses_are_skipped_failed_ones_retried(tmp_path: Path) -> None:
    db = _db(tmp_path)
    statuses = ["ok", "no_tags", "bad_image", "timeout", "crashed", "error", "skipped"]
    images = [_image(tmp_path, f"{s}.jpg") for s in statuses]
    db.record_images("run1", images)
    for status, img in zip(statuses, images, strict=True):
        db.put_cell("run1", img.sha256, "m", {"status": status}, KEY)
    done = db.done_statuses("m", "k1", [img.sha256 for img in images])
    assert sorted(done.values()) == ["bad_image", "no_tags", "ok"]
    assert db.done_statuses("m", "k2", [img.sha256 for img in images]) == {}, "other options: redo"
    assert db.done_statuses("other-model", "k1", [img.sha256 for img in images]) == {}


def test_a_failure_never_replaces_a_done_cell(tmp_path: Path) -> None:
    db = _db(tmp_path)
    img = _image(tmp_path, "a.jpg")
    db.record_images("run1", [img])
    assert db.put_cell("run1", img.sha256, "m", {"status": "timeout"}, KEY)
    assert db.put_cell("run1", img.sha256, "m", {"status": "ok", "tags": []}, KEY), "a success replaces a failure"
    assert not db.put_cell("run1", img.sha256, "m", {"status": "crashed"}, KEY), "the ok cell is kept"
    assert db.put_cell(
        "run1", img.sha256, "m", {"status": "ok", "tags": [{"name": "x", "score": 1.0}]}, CellMeta(options_key="k2")
    )
    assert db.done_statuses("m", "k2", [img.sha256]) == {img.sha256: "ok"}
    assert db.cells_of([img.sha256])[img.sha256]["m"]["tags"][0]["name"] == "x"


class FakeSupervisor:
    """Replaces Supervisor.run: emits one cell per image it is given and records which it got."""

    sent: list[list[str]] = []
    status = "ok"

    @staticmethod
    def run(self: Any, images: list[Any]) -> Any:
        FakeSupervisor.sent.append([img.path.name for img in images])
        self.run_info.load = {"device": "cpu", "load_s": 0.5, "model_version": "fake@1", "notes": []}
        for img in images:
            self.sink(
                img,
                {
                    "status": FakeSupervisor.status,
                    "tags": [{"name": "rust", "score": 0.9}],
                    "caption": "a rusty door",
                    "inference_s": 0.01,
                },
            )
        return self.run_info


@pytest.fixture()
def fake_runs(monkeypatch: pytest.MonkeyPatch) -> type[FakeSupervisor]:
    monkeypatch.setattr(envbuild, "env_state", lambda env: ("ready", ""))
    monkeypatch.setattr(Supervisor, "run", FakeSupervisor.run)
    FakeSupervisor.sent = []
    FakeSupervisor.status = "ok"
    return FakeSupervisor


def _analyse(
    folder: Path,
    db: ResultStore,
    options: RunOptions | None = None,
    force: bool = False,
    models: tuple[str, ...] = ("m",),
) -> Document:
    images = [hash_file(p) for p in sorted(folder.glob("*.jpg"))]
    return Analysis(images, [spec(m) for m in models], options or RunOptions(), store=db, force=force).run().document()


def test_rerun_sends_only_missing_or_failed_images(tmp_path: Path, fake_runs: type[FakeSupervisor]) -> None:
    folder = tmp_path / "photos"
    for name in ("a.jpg", "b.jpg"):
        _image(folder, name)
    db = ResultStore(default_store_path())
    _analyse(folder, db)
    _image(folder, "c.jpg")
    fake_runs.status = "timeout"
    doc = _analyse(folder, db)
    assert fake_runs.sent == [["a.jpg", "b.jpg"], ["c.jpg"]]
    assert [img["results"]["m"]["status"] for img in doc["images"]] == ["ok", "ok", "timeout"]
    assert "2 of 3 result(s) from the store" in doc["models"][0]["message"]
    fake_runs.status = "ok"
    _analyse(folder, db)
    assert fake_runs.sent[-1] == ["c.jpg"], "a timed-out cell is retried"
    doc = _analyse(folder, db)
    assert fake_runs.sent[-1] == ["c.jpg"] and len(fake_runs.sent) == 3, "all done: the model is not started"
    assert doc["models"][0]["status"] == "ok" and doc["models"][0]["load_s"] == 0.5
    _analyse(folder, db, RunOptions(infer_overrides={"general_threshold": 0.5}))
    assert fake_runs.sent[-1] == ["a.jpg", "b.jpg", "c.jpg"], "changed options: redo"
    _analyse(folder, db, RunOptions(infer_overrides={"general_threshold": 0.5}), force=True)
    assert len(fake_runs.sent) == 5, "--force redoes done cells"


def test_runs_and_model_entries_are_recorded(tmp_path: Path, fake_runs: type[FakeSupervisor]) -> None:
    folder = tmp_path / "photos"
    _image(folder, "a.jpg")
    db = ResultStore(tmp_path / "s.sqlite")
    doc = _analyse(folder, db, models=("m", "cap"))
    [run] = db.runs()
    assert run["run_id"] == doc["run_id"] and run["status"] == "finished" and run["finished"] >= run["started"]
    assert run["mltag_version"] and run["options"]["timeout_s"] is None
    row = (
        sqlite3.connect(db.path)
        .execute("SELECT model_version, device, load_s, run_id, options_key FROM cells WHERE model = 'm'")
        .fetchone()
    )
    assert row[:4] == ("fake@1", "cpu", 0.5, doc["run_id"]) and row[4]
    entry = db.model_entry("m")
    assert entry is not None and entry["load_s"] == 0.5 and entry["message"] == ""


def test_moved_file_is_recognised_and_both_paths_recorded(tmp_path: Path, fake_runs: type[FakeSupervisor]) -> None:
    folder = tmp_path / "photos"
    _image(folder, "a.jpg", b"the same bytes")
    db = ResultStore(tmp_path / "s.sqlite")
    _analyse(folder, db)
    (folder / "a.jpg").rename(folder / "renamed.jpg")
    doc = _analyse(folder, db)
    assert fake_runs.sent == [["a.jpg"]], "the renamed file is not run again"
    assert doc["images"][0]["path"].endswith("renamed.jpg") and doc["images"][0]["results"]["m"]["status"] == "ok"
    rebuilt = from_store(db, under=[folder]).document()
    [entry] = rebuilt["images"]
    assert entry["path"] == str((folder / "renamed.jpg").resolve())
    assert entry["seen_as"] == [str((folder / "a.jpg").resolve())]
    assert from_store(db, under=[tmp_path / "elsewhere"]).document()["images"] == []


def test_document_from_the_store_validates(tmp_path: Path) -> None:
    db = _db(tmp_path)
    a, b = _image(tmp_path / "p", "a.jpg"), _image(tmp_path / "p", "sub/b.jpg")
    db.record_images("run1", [a, b])
    tagger = CellMeta(options_key="k", kind="tagger", device="cpu", load_s=1.0)
    db.put_model(
        "run1",
        "cap",
        {
            "name": "cap",
            "kind": "captioner",
            "adapter": "runners.x",
            "env": "modern",
            "hub_id": "x/y",
            "revision": "r",
            "status": "ok",
            "device": "cpu",
            "load_s": 2.0,
            "warmup_s": None,
            "notes": [],
        },
    )
    db.put_cell("run1", a.sha256, "tag", {"status": "ok", "tags": [{"name": "rust", "score": 0.5}]}, tagger)
    caption = {"status": "ok", "caption": "A derelict hallway with broken windows.", "tags": []}
    db.put_cell("run1", a.sha256, "cap", caption, CellMeta(options_key="k", kind="captioner"))
    doc = from_store(db).document()
    jsonschema.validate(doc, SCHEMA)
    assert [m["name"] for m in doc["models"]] == ["cap", "tag"], "models in the order they were first recorded"
    assert [Path(i["path"]).name for i in doc["images"]] == ["a.jpg", "b.jpg"]
    cells = doc["images"][0]["results"]
    assert {"hallway", "broken window"} <= {t["name"] for t in cells["cap"]["tags"]}
    assert all(t["estimated"] for t in cells["cap"]["tags"])
    assert doc["images"][1]["results"]["tag"]["status"] == "skipped", "no stored cell: said so, not dropped"
    assert doc["models"][1]["device"] == "cpu" and doc["models"][1]["load_s"] == 1.0, "from the cells' columns"
    stored = json.loads(sqlite3.connect(db.path).execute("SELECT cell FROM cells WHERE model='cap'").fetchone()[0])
    assert stored == caption, "the store keeps the runner's cell; caption tags are added for display only"
    only_sub = from_store(db, under=[tmp_path / "p" / "sub"], models=["tag"]).document()
    assert [Path(i["path"]).name for i in only_sub["images"]] == ["b.jpg"] and len(only_sub["models"]) == 1


def test_concurrent_writes_from_threads(tmp_path: Path) -> None:
    db = _db(tmp_path)
    second = ResultStore(db.path)  # another connection, as a second process would have
    images = [_image(tmp_path, f"{i}.jpg") for i in range(30)]
    db.record_images("run1", images)

    def write(target: ResultStore, model: str) -> None:
        for img in images:
            target.put_cell("run1", img.sha256, model, {"status": "ok", "model": model}, KEY)

    threads = [
        threading.Thread(target=write, args=(target, f"m{i}")) for i, target in enumerate([db, db, db, second, second])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check = sqlite3.connect(db.path)
    assert check.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert check.execute("SELECT count(*) FROM cells").fetchone()[0] == 150
    assert all(len(db.done_statuses(f"m{i}", "k1", [img.sha256 for img in images])) == 30 for i in range(5))


def test_empty_file_is_migrated_and_settings_hold(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    path.write_bytes(b"")  # an empty file is an SQLite database at version 0
    db = ResultStore(path)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == store.STORE_VERSION == len(store.schema.MIGRATIONS)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {"runs", "images", "image_paths", "cells", "run_models", "file_stats", "vocabularies"} <= {
        r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    db.close()
    ResultStore(path).close()  # opening again migrates nothing


def test_a_new_version_is_one_function_appended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = _db(tmp_path)
    img = _image(tmp_path, "a.jpg")
    db.record_images("run1", [img])
    db.put_cell("run1", img.sha256, "m", {"status": "ok"}, KEY)
    db.close()

    def next_version(con: sqlite3.Connection) -> None:
        con.execute("ALTER TABLE cells ADD COLUMN note TEXT")

    monkeypatch.setattr(store.schema, "MIGRATIONS", (*store.schema.MIGRATIONS, next_version))
    db = ResultStore(db.path)
    con = sqlite3.connect(db.path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == store.STORE_VERSION + 1
    assert "note" in [r[1] for r in con.execute("PRAGMA table_info(cells)")]
    assert db.cells_of([img.sha256]) == {img.sha256: {"m": {"status": "ok"}}}, "data kept"


def test_refuses_newer_foreign_corrupt_missing_and_locked(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite"
    sqlite3.connect(newer).execute("PRAGMA user_version = 99")
    with pytest.raises(
        StoreError,
        match=rf"newer mltag \(store schema v99; .* reads up to v{store.STORE_VERSION}\): "
        "upgrade mltag",
    ):
        ResultStore(newer)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not an mltag results store"):
        ResultStore(foreign)
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database, " * 100)
    with pytest.raises(StoreError, match="not a readable mltag results store .* move it aside"):
        ResultStore(garbage)
    with pytest.raises(StoreError, match=r"no results store at .*: `mltag analyze PATHS` creates one"):
        ResultStore(tmp_path / "missing.sqlite", create=False)
    locked = tmp_path / "locked.sqlite"
    holder = sqlite3.connect(locked, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    with pytest.raises(StoreError, match="locked by another process .* --no-store"):
        ResultStore(locked, busy_timeout_s=0.1)
    holder.execute("ROLLBACK")


def test_default_location_is_the_user_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLTAG_HOME", str(tmp_path / "home"))
    assert default_store_path() == tmp_path / "home" / "results.sqlite"
    monkeypatch.delenv("MLTAG_HOME")
    import platformdirs

    assert default_store_path() == platformdirs.user_data_path("mltag", appauthor=False) / "results.sqlite"


def test_legacy_in_folder_stores_are_found(tmp_path: Path) -> None:
    (tmp_path / "photos" / "ward").mkdir(parents=True)
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    (tmp_path / "other").mkdir()
    assert legacy_stores([tmp_path / "photos"]) == []
    ResultStore(tmp_path / "photos" / ".mltag" / "results.sqlite").close()
    old = tmp_path / "photos" / ".mltag" / "results.sqlite"
    assert legacy_stores([tmp_path / "photos"]) == [old]
    assert legacy_stores([tmp_path / "photos" / "a.jpg"]) == [old]
    assert legacy_stores([tmp_path / "photos" / "ward"]) == [old], "a store in a parent folder counts"
    assert legacy_stores([tmp_path / "photos" / "ward", tmp_path / "other"]) == [], "common root: tmp_path"


def test_a_legacy_store_is_merged_read_only(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    img = _image(photos, "a.jpg")
    legacy = ResultStore(photos / ".mltag" / "results.sqlite")
    legacy.begin_run("old-run", 1.0, {}, ["analyze"])
    legacy.record_images("old-run", [img])
    legacy.put_cell("old-run", img.sha256, "m", {"status": "ok", "tags": [{"name": "rust", "score": 0.9}]}, KEY)
    legacy.close()
    (photos / ".mltag").chmod(0o555)
    (photos / ".mltag" / "results.sqlite").chmod(0o444)
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in (photos / ".mltag").iterdir())
    try:
        db = ResultStore(tmp_path / "new.sqlite")
        assert db.import_store(photos / ".mltag" / "results.sqlite") == 1
        assert db.import_store(photos / ".mltag" / "results.sqlite") is None, "the same file: merged once"
        assert db.done_statuses("m", "k1", [img.sha256]) == {img.sha256: "ok"}
        [entry] = from_store(db, under=[photos]).document()["images"]
        assert entry["results"]["m"]["tags"][0]["name"] == "rust"
        after = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in (photos / ".mltag").iterdir())
        assert after == before, "the legacy store and its folder are only read"
    finally:
        (photos / ".mltag").chmod(0o755)


def test_a_store_that_cannot_be_written_stops_the_run_and_keeps_what_was_stored(
    tmp_path: Path, fake_runs: type[FakeSupervisor], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "photos"
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _image(folder, name)
    db = ResultStore(tmp_path / "s.sqlite")
    put = ResultStore.put_cell
    calls = []

    def full_after_one(self: ResultStore, *args: Any) -> bool:
        calls.append(args)
        if len(calls) > 1:
            with self.writing():  # the failure comes from SQLite, through the store's own edge
                raise sqlite3.OperationalError("database or disk is full")
        return put(self, *args)

    monkeypatch.setattr(ResultStore, "put_cell", full_after_one)
    with pytest.raises(StoreError, match=r"disk is full\): free some disk space there, or pass --store OTHER_PATH"):
        _analyse(folder, db)
    monkeypatch.setattr(ResultStore, "put_cell", put)
    assert len(sqlite3.connect(db.path).execute("SELECT sha256 FROM cells").fetchall()) == 1, "the first is kept"
