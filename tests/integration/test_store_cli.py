"""The results store through the real CLI, runner host and wd14 adapter (tiny model): kill -9 and resume,
one model re-run, and `mltag report` rendering the store without a runner."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest
from PIL import Image

from orchestrator.paths import PROJECT_ROOT
from orchestrator.store import ResultStore
from tests.support import SCHEMA, mltag

pytestmark = pytest.mark.adapter


def stored_cells(db: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """(sha256, model) -> (run_id, cell JSON), read-only (a run may be writing)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {(r[0], r[1]): (r[2], r[3]) for r in con.execute("SELECT sha256, model, run_id, cell FROM cells")}
    finally:
        con.close()


def test_kill_9_loses_nothing_and_the_next_run_completes(tiny_model, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    buf = io.BytesIO()  # 6 MP noise: decoding keeps the runner busy ~0.2 s per image
    Image.merge("RGB", [Image.effect_noise((3000, 2000), 40 + 20 * i) for i in range(3)]).save(buf, "JPEG")
    for i in range(16):  # bytes after the JPEG end marker make each file distinct content
        (folder / f"img{i:02d}.jpg").write_bytes(buf.getvalue() + b"%d" % i)
    db = Path(os.environ["MLTAG_HOME"]) / "results.sqlite"  # the default store: the user data folder
    args = [
        "analyze",
        str(folder),
        "--models",
        "wd14",
        f"--weights=wd14={tiny_model('wd14')}",
        "--offline",
        "--format",
        "json",
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: dict[tuple[str, str], tuple[str, str]] = {}
    deadline = time.monotonic() + 120
    while len(seen) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before 3 cells were stored"
        try:
            seen = stored_cells(db)
        except sqlite3.Error:  # not created yet
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL

    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    [(first_run, status)] = con.execute("SELECT run_id, status FROM runs").fetchall()
    assert status == "running", "killed: never marked finished"
    con.close()
    after_kill = stored_cells(db)
    assert seen.items() <= after_kill.items(), "every cell reported before the kill is there, unchanged"
    assert 3 <= len(after_kill) < 16

    resumed = mltag(*args)
    assert resumed.returncode == 0, resumed.stderr
    doc = json.loads(resumed.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert [img["results"]["wd14"]["status"] for img in doc["images"]] == ["ok"] * 16
    done = len(after_kill)
    assert f"{done} result(s) reused, {16 - done} computed" in resumed.stderr
    final = stored_cells(db)
    assert {k: v for k, v in final.items() if k in after_kill} == after_kill, "stored cells were not redone"
    assert sorted(run for run, _ in final.values()) == [first_run] * done + [doc["run_id"]] * (16 - done)
    shutil.rmtree(folder)


def test_run_replaces_one_model_and_report_renders_without_a_runner(tiny_model, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("brick.png", "coffee.png", "chelsea.png"):
        shutil.copy(PROJECT_ROOT / "samples" / name, folder / name)
    weights = tiny_model("wd14")  # wd14-eva02 shares the wd14 adapter and file layout
    both = ["--weights", f"wd14={weights}", "--weights", f"wd14-eva02={weights}", "--offline"]
    first = mltag("analyze", str(folder), "--models", "wd14,wd14-eva02", *both, "--format", "json")
    assert first.returncode == 0, first.stderr
    db = Path(os.environ["MLTAG_HOME"]) / "results.sqlite"  # the default store: the user data folder
    before = stored_cells(db)
    assert len(before) == 6

    rerun = mltag("run", "wd14", str(folder), "--weights", f"wd14={weights}", "--offline", "--format", "json")
    assert rerun.returncode == 0, rerun.stderr
    run_id = json.loads(rerun.stdout)["run_id"]
    after = stored_cells(db)
    assert {k: v for k, v in after.items() if k[1] == "wd14-eva02"} == {
        k: v for k, v in before.items() if k[1] == "wd14-eva02"
    }, "the other model's cells are untouched"
    assert {v[0] for k, v in after.items() if k[1] == "wd14"} == {run_id}, "wd14's cells are replaced"

    # No model env exists under this cache: anything that needed a runner would come back `skipped`.
    no_envs = {"MLTAG_CACHE_DIR": str(tmp_path / "empty-cache")}
    (folder / "brick.png").rename(folder / "renamed-brick.png")
    again = mltag("analyze", str(folder), "--models", "wd14,wd14-eva02", *both, "--format", "json", env=no_envs)
    assert again.returncode == 0, again.stderr
    assert "6 result(s) reused, 0 computed" in again.stderr, "done cells (a renamed file too) are not run again"

    runs = sqlite3.connect(db).execute("SELECT count(*) FROM runs").fetchone()[0]
    started = time.monotonic()
    report = mltag("report", str(folder), "--format", "json", env=no_envs)
    assert report.returncode == 0, report.stderr
    assert time.monotonic() - started < 30
    doc = json.loads(report.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert sqlite3.connect(db).execute("SELECT count(*) FROM runs").fetchone()[0] == runs, "report runs nothing"
    assert [m["name"] for m in doc["models"]] == ["wd14", "wd14-eva02"]
    assert sorted(Path(img["path"]).name for img in doc["images"]) == ["chelsea.png", "coffee.png", "renamed-brick.png"]
    cells = ResultStore(db).cells_of(img["sha256"] for img in doc["images"])
    for img in doc["images"]:
        assert set(img["results"]) == {"wd14", "wd14-eva02"}
        for model, result in img["results"].items():
            # the store keeps the cell as the runner gave it; documents add tag_count as they read it
            shown = dict(result)
            count = shown.pop("tag_count")
            assert count == sum(1 for t in shown["tags"] if t.get("category") != "rating")
            assert result["status"] == "ok" and shown == cells[img["sha256"]][model]
    renamed = next(img for img in doc["images"] if img["path"].endswith("renamed-brick.png"))
    assert renamed["seen_as"] == [str((folder / "brick.png").resolve())]

    table = mltag("report", "--store", str(db), "--models", "wd14-eva02", env=no_envs)
    assert table.returncode == 0 and "wd14-eva02" in table.stdout and "renamed-brick.png" in table.stdout
    assert "╭─ wd14 " not in table.stdout


def test_a_rerun_reads_only_changed_files(tiny_model, tmp_path: Path) -> None:
    """The store's stat cache through the CLI: a file whose size and mtime (and device, inode) are
    unchanged is not read; new bytes kept at the same size and mtime go unseen (rsync's quick check)
    until --rehash; a touched file is hashed again. A name that is not UTF-8 included."""
    folder = tmp_path / "photos"
    folder.mkdir()
    names = [b"a.jpg", b"caf\xe9 latin-1.jpg", b"c.jpg"]
    paths = [os.path.join(os.fsencode(folder), n) for n in names]
    old_ns = 1_600_000_000 * 10**9  # 2020: a file modified within seconds of its hashing is never cached
    for i, path in enumerate(paths):
        shutil.copy(PROJECT_ROOT / "samples" / ("brick.png", "coffee.png", "chelsea.png")[i], os.fsdecode(path))
        with open(path, "ab") as f:
            f.write(b"trailer-0")  # after the image's end: decoders ignore it, the hash does not
        os.utime(path, ns=(old_ns, old_ns + i))
    db = tmp_path / "store.sqlite"
    args = [
        "analyze",
        str(folder),
        "--models",
        "wd14",
        f"--weights=wd14={tiny_model('wd14')}",
        "--offline",
        "--format",
        "json",
        "--store",
        str(db),
    ]

    def shas(*extra: str) -> list[str]:
        proc = mltag(*args, *extra)
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        by_name = {
            base64.b64decode(img["path_bytes"]) if "path_bytes" in img else os.fsencode(img["path"]): img["sha256"]
            for img in doc["images"]
        }  # path_bytes: the exact bytes of a non-UTF-8 name
        return [by_name[os.path.abspath(p)] for p in paths]

    def content_sha(path: bytes) -> str:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    first = shas()
    assert first == [content_sha(p) for p in paths]
    assert sqlite3.connect(db).execute("SELECT count(*) FROM file_stats").fetchone()[0] == 3

    def rewrite(path: bytes, trailer: bytes, keep_mtime: bool) -> None:
        st = os.stat(path)
        with open(path, "r+b") as f:  # in place: the same inode, the same size
            f.seek(-len(trailer), os.SEEK_END)
            f.write(trailer)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns if keep_mtime else st.st_mtime_ns + 10**9))

    rewrite(paths[1], b"trailer-1", keep_mtime=True)
    assert shas() == first, "same size and mtime: not read, so the new bytes go unseen"
    rehashed = shas("--rehash")
    assert rehashed[1] == content_sha(paths[1]) != first[1] and rehashed[::2] == first[::2], "--rehash reads them"
    rewrite(paths[2], b"trailer-2", keep_mtime=False)
    touched = shas()
    assert touched[2] == content_sha(paths[2]) != first[2], "a touched file is hashed again"
    assert touched[:2] == rehashed[:2]
