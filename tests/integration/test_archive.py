"""A photographer's archive: it is never written, any file name goes through every output, files
that cannot be read are cells with a reason, a legacy in-folder store is found, memory stays flat.

The CLI runs as a user runs it (`python -m orchestrator`), wd14 on its tiny random ONNX model."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import re
import shutil
from pathlib import Path

import jsonschema
import pytest
from PIL import Image

from orchestrator.images import hash_file
from orchestrator.store import CellMeta, ResultStore
from schemas.status import SUCCESS
from tests.integration.helpers import fake_job, peak_rss_mb, run
from tests.support import SCHEMA, mltag

pytestmark = pytest.mark.adapter

# Names a camera, an old drive or another system leaves behind (bytes: one is not valid UTF-8).
ODD_NAMES = [
    b"caf\xe9 latin-1.jpg",
    b"new\nline.jpg",
    b"quote\"and'apostrophe.jpg",
    b"-leading-dash.jpg",
    ("long-" + "x" * 200 + ".jpg").encode(),
    "ünïcödé ✓.jpg".encode(),
]


def _photo(path: bytes | Path, seed: int) -> None:
    img = Image.radial_gradient("L").rotate(seed * 17).convert("RGB").resize((96, 64))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def make_archive(root: Path) -> Path:
    """Odd names, a linked folder, a dangling link, a FIFO, a duplicate: the archive as found."""
    archive = root / "archive"
    (archive / "roll 1").mkdir(parents=True)
    (root / "elsewhere").mkdir()
    for i, name in enumerate(ODD_NAMES):
        _photo(os.fsencode(archive / "roll 1") + b"/" + name, i)
    _photo(root / "elsewhere" / "linked.jpg", 99)
    (archive / "linked folder").symlink_to(root / "elsewhere", target_is_directory=True)
    (archive / "gone.jpg").symlink_to(root / "nowhere.jpg")
    os.mkfifo(archive / "pipe.jpg")
    shutil.copy(os.fsencode(archive / "roll 1") + b"/" + ODD_NAMES[0], os.fsencode(archive / "copy.jpg"))
    return archive


def snapshot(folder: Path) -> list[tuple[bytes, int, int, int]]:
    """Every entry under `folder` (links not followed): name, size, mtime, mode."""
    out = []
    for dirpath, dirnames, filenames in os.walk(os.fsencode(folder)):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            out.append((os.path.join(dirpath, name), st.st_size, st.st_mtime_ns, st.st_mode))
    return sorted(out)


def shown(name: bytes) -> str:
    return name.decode("utf-8", "backslashreplace")


@pytest.fixture()
def wd14(tiny_model) -> str:
    return f"wd14={tiny_model('wd14')}"


def test_every_name_goes_through_every_output(wd14: str, tmp_path: Path) -> None:
    archive = make_archive(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    proc = mltag(
        "analyze",
        str(archive),
        "--models",
        "wd14",
        "--weights",
        wd14,
        "--offline",
        "--format",
        "json",
        "--out",
        str(out / "results.json"),
    )
    assert proc.returncode == 1, proc.stderr  # the dangling link and the FIFO are bad images
    assert "2 file(s) cannot be read" in proc.stderr
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    jsonschema.validate(doc, SCHEMA)
    by_name = {Path(img["path"]).name: img for img in doc["images"]}
    for name in ODD_NAMES:
        image = by_name[shown(name)]
        assert image["results"]["wd14"]["status"] in SUCCESS, image
    weird = by_name[shown(ODD_NAMES[0])]
    assert base64.b64decode(weird["path_bytes"]).endswith(ODD_NAMES[0]), "the exact bytes travel beside the text"
    assert weird["duplicate_of"] == by_name["copy.jpg"]["path"], "found first, run once"
    assert by_name["linked.jpg"]["path"] == str(archive / "linked folder" / "linked.jpg")
    dangling, fifo = by_name["gone.jpg"]["results"]["wd14"], by_name["pipe.jpg"]["results"]["wd14"]
    assert dangling["status"] == "bad_image" and "dangling symbolic link" in dangling["message"]
    assert fifo["status"] == "bad_image" and "not a regular file" in fifo["message"]

    # The same images, read back from the store, in every format.
    for fmt, file in (("csv", "r.csv"), ("jsonl", "r.jsonl"), ("table", "r.txt"), ("html", "r.html")):
        proc = mltag("report", str(archive), "--format", fmt, "--out", str(out / file))
        assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO((out / "r.csv").read_text(encoding="utf-8"))))
    lines = [json.loads(line) for line in (out / "r.jsonl").read_text(encoding="utf-8").splitlines()]
    table = (out / "r.txt").read_text(encoding="utf-8")
    html = (out / "r.html").read_text(encoding="utf-8")
    for name in ODD_NAMES:
        text = shown(name)
        assert any(row["image"].endswith(text) for row in rows), text
        assert any(line.get("path", "").endswith(text) for line in lines[1:]), text
        assert text.replace("\n", "\\n")[:30] in table, "the table shows a newline as \\n, on one line"
    # The HTML report's image records (JSON blocks the page's script draws): every name, exactly.
    blocks = re.findall(r'class="mltag-records">(.*?)</script>', html, re.S)
    assert blocks and not any(set("<>&'") & set(block) for block in blocks), "escaped as Jinja's tojson does"
    paths = {r["p"] for block in blocks for r in json.loads(block)}
    for name in ODD_NAMES:
        assert any(p.endswith(shown(name)) for p in paths), name
    assert len(lines) == 1 + len(doc["images"])


def test_the_archive_is_never_written(wd14: str, tiny_model, tmp_path: Path, mltag_home: Path) -> None:
    archive = make_archive(tmp_path)
    labels = tmp_path / "labels.csv"
    labels.write_text(f"image,tags\n{archive / 'copy.jpg'},ruins\n", encoding="utf-8")
    before = snapshot(archive)
    common = ["--weights", wd14, "--offline"]
    steps = [
        ("analyze", str(archive), "--models", "wd14", *common),
        ("run", "wd14", str(archive / "roll 1"), *common),
        ("report", str(archive), "--html", str(tmp_path / "report.html")),
        (
            "judge",
            str(archive),
            "--judge",
            "qwen25-judge",
            "--weights",
            f"qwen25-judge={tiny_model('judge')}",
            "--offline",
            # a random model never ends its text: 384 new tokens a photo is a minute here, and what
            # is checked is that nothing is written
            "--option",
            "max_new_tokens=8",
        ),
        ("eval", "--labels", str(labels), str(archive)),
    ]
    for args in steps:
        proc = mltag(*args)
        assert proc.returncode in (0, 1), (args, proc.stderr)
        assert snapshot(archive) == before, f"`mltag {args[0]}` changed the archive"
    assert not (archive / ".mltag").exists()
    assert (mltag_home / "results.sqlite").is_file(), "results go to the user's data folder (MLTAG_HOME)"


def test_a_legacy_in_folder_store_is_found_and_left_alone(tmp_path: Path, mltag_home: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    _photo(archive / "a.jpg", 1)
    image = hash_file(archive / "a.jpg")
    legacy = ResultStore(archive / ".mltag" / "results.sqlite")
    legacy.begin_run("old", 1.0, {}, ["analyze"])
    legacy.record_images("old", [image])
    legacy.put_cell(
        "old",
        image.sha256,
        "wd14",
        {"status": "ok", "tags": [{"name": "ruins", "score": 0.8}]},
        CellMeta(options_key="k", kind="tagger"),
    )
    legacy.close()
    before = snapshot(archive)
    proc = mltag("report", str(archive), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert "older mltag" in proc.stderr and str(mltag_home / "results.sqlite") in proc.stderr
    [entry] = json.loads(proc.stdout)["images"]
    assert entry["results"]["wd14"]["tags"] == [{"name": "ruins", "score": 0.8}]
    assert snapshot(archive) == before, "the legacy store is read, never written"
    again = mltag("report", str(archive), "--format", "json")
    assert "older mltag" not in again.stderr, "merged once"


def test_a_file_that_vanishes_mid_run_is_a_skipped_cell(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (folder / name).write_bytes(b"photo " + name.encode())
    images = [hash_file(folder / n) for n in ("a.jpg", "b.jpg", "c.jpg")]
    (folder / "b.jpg").unlink()  # gone between discovery and its turn
    info, cells = run(fake_job(tmp_path, "ok"), images)
    assert cells["a.jpg"]["status"] == cells["c.jpg"]["status"] == "ok"
    assert cells["b.jpg"]["status"] == "skipped" and "could not be read" in cells["b.jpg"]["message"]


def test_memory_does_not_grow_with_the_photos(tiny_model, tmp_path: Path) -> None:
    """wd14 with the real WD v3 tag count (10,861 raw scores per cell), JSON to a file, store on:
    5x the photos must not cost more than 1.25x the orchestrator's peak memory."""
    weights = tiny_model("wd14_wide")
    peaks = {}
    for n in (60, 300):
        folder = tmp_path / f"photos-{n}"
        folder.mkdir()
        for i in range(n):
            Image.new("RGB", (48, 32), (i % 256, (i * 7) % 256, (i * 13) % 256)).save(folder / f"{i:05d}.png")
        peak, _, proc = peak_rss_mb(
            [
                "analyze",
                str(folder),
                "--models",
                "wd14",
                "--weights",
                f"wd14={weights}",
                "--offline",
                "--format",
                "json",
                "--out",
                str(tmp_path / f"{n}.json"),
                "--store",
                str(tmp_path / f"{n}.sqlite"),
            ]
        )
        assert proc.returncode == 0, proc.stderr
        assert len(json.loads((tmp_path / f"{n}.json").read_text())["images"]) == n
        peaks[n] = peak
    assert peaks[300] <= 1.25 * peaks[60], peaks
