"""Issue 20 item 5: photos inside a ZIP, a .tar.gz, a parquet image dataset and a `datasets`
save_to_disk folder analyse through the real CLI (tiny wd14) as if they were folders: the same
photos, the same content hashes, the same cells; a re-run reuses the stored cells; the archives
are never written or extracted."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from PIL import Image

from tests.support import SCHEMA, mltag
from tests.tiny_models import tiny_weights

pytestmark = pytest.mark.adapter

ODD = "été #1 (copy).PNG"  # a member name with spaces, accents and an upper-case suffix


def _photo(colour: str, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (96, 64), colour).save(buf, fmt)
    return buf.getvalue()


PHOTOS = {"ward/01.jpg": _photo("red"), "ward/night/02.jpg": _photo("navy"), ODD: _photo("green", "PNG")}


def _snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under `folder`: size, mtime and content hash (the archive is never written)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            st = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns, digest)
    return out


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("archives") / "in"
    (folder / "plain" / "ward" / "night").mkdir(parents=True)
    for name, data in PHOTOS.items():  # the same photos as plain files: the reference
        (folder / "plain" / name).write_bytes(data)
    with zipfile.ZipFile(folder / "photos.zip", "w") as zf:
        for name, data in PHOTOS.items():
            zf.writestr(name, data)
        zf.writestr("notes.txt", b"not a photo: skipped, as in folders")
        zf.writestr("ward/", b"")  # a folder entry
        zf.writestr("broken.jpg", b"not a JPEG at all")  # the runner cannot decode it
        zf.writestr(zipfile.ZipInfo("crc.jpg"), _photo("white"))  # stored: its bytes are damaged below
    data = (folder / "photos.zip").read_bytes()
    white = _photo("white")
    at = data.index(white) + len(white) // 2
    (folder / "photos.zip").write_bytes(data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :])  # a CRC error
    with tarfile.open(folder / "photos.tar.gz", "w:gz") as tf:
        for name, photo in PHOTOS.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(photo)
            tf.addfile(info, io.BytesIO(photo))
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"bytes": photo, "path": name} for name, photo in PHOTOS.items()]
    pq.write_table(
        pa.table({"image": rows, "label": list(range(len(rows)))}), folder / "data.parquet", row_group_size=2
    )  # two row groups: rows are read a group at a time
    import datasets  # a save_to_disk folder, written by Hugging Face's own library (its Image feature)

    ds = datasets.Dataset.from_dict({"image": rows}, features=datasets.Features({"image": datasets.Image()}))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(folder / "saved"))
    return folder


def _analyze(paths: list[Path], *flags: str) -> tuple[dict[str, Any], str]:
    weights = [f"--weights={m}={p}" for m, p in tiny_weights(["wd14"]).items()]
    proc = mltag(
        "analyze",
        *map(str, paths),
        "--models",
        "wd14",
        *weights,
        "--format",
        "json",
        "--offline",
        "--device",
        "cpu",
        *flags,
        timeout=900,
    )
    assert proc.returncode in (0, 1), proc.stderr[-4000:]  # 1: the bad_image cells
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, SCHEMA)
    return doc, proc.stderr


def test_zip_tar_and_parquet_analyse_as_folders(archives: Path, tmp_path: Path) -> None:
    before = _snapshot(archives)
    store = tmp_path / "store.sqlite"
    zipped, tarred, dataset, saved, plain = (
        archives / n for n in ("photos.zip", "photos.tar.gz", "data.parquet", "saved", "plain")
    )
    # Each container on its own (identical content runs once in a run: a member must be read to be sent).
    reference = {img["path"]: img for img in _analyze([plain], "--no-store")[0]["images"]}
    cells: dict[str, Any] = {}
    for container in (zipped, tarred, dataset, saved):
        cells.update({img["path"]: img for img in _analyze([container], "--no-store")[0]["images"]})
    rows = {f"{d}!/train/{i}" for d in (dataset, saved) for i in range(len(PHOTOS))}
    members = {f"{zipped}!/{n}" for n in [*PHOTOS, "broken.jpg", "crc.jpg"]} | {f"{tarred}!/{n}" for n in PHOTOS}
    expected = members | rows
    assert set(cells) == expected  # notes.txt and the folder entry skipped
    for i, name in enumerate(PHOTOS):
        want = reference[str(plain / name)]
        for path in (f"{zipped}!/{name}", f"{tarred}!/{name}", f"{dataset}!/train/{i}", f"{saved}!/train/{i}"):
            got = cells[path]
            assert got["sha256"] == want["sha256"] and got["size_bytes"] == want["size_bytes"], path
            assert got["results"]["wd14"]["status"] == "ok", got["results"]["wd14"]
            assert got["results"]["wd14"]["tags"] == want["results"]["wd14"]["tags"], path
            assert got["results"]["wd14"]["image"]["width"] == 96, got["results"]["wd14"]["image"]
    broken = cells[f"{zipped}!/broken.jpg"]["results"]["wd14"]
    assert broken["status"] == "bad_image", broken
    crc = cells[f"{zipped}!/crc.jpg"]["results"]["wd14"]
    assert crc["status"] == "bad_image" and "crc.jpg in photos.zip" in crc["message"] and "CRC" in crc["message"], crc

    first, err = _analyze([zipped, tarred, dataset, saved], "--store", str(store))
    assert "0 result(s) reused, 5 computed" in err, err  # 11 paths, 5 contents: 3 photos, broken, crc
    cells = {img["path"]: img for img in first["images"]}
    # A re-run: every cell from the store (the members' hashes from the stat cache, keyed on the archive's stat).
    again, err = _analyze([zipped, tarred, dataset, saved], "--store", str(store))
    assert "5 result(s) reused, 0 computed" in err, err
    again_cells = {img["path"]: img["results"]["wd14"] for img in again["images"]}
    for path in expected - {f"{zipped}!/crc.jpg"}:
        assert again_cells[path] == cells[path]["results"]["wd14"], path

    # Stored paths name the members; `mltag report ARCHIVE` selects them.
    proc = mltag("report", str(zipped), "--store", str(store), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    listed = {img["path"] for img in json.loads(proc.stdout)["images"]}
    assert listed == {p for p in expected if p.startswith(str(zipped))}

    # The HTML report's thumbnails read the members (the damaged ones are placeholders with the reason).
    html = tmp_path / "report.html"
    proc = mltag("report", str(zipped), "--store", str(store), "--html", str(html))
    assert proc.returncode == 0, proc.stderr
    text = html.read_text()
    assert text.count("data:image/jpeg;base64,") == len(PHOTOS) and "Bad CRC-32" in text
    # XMP keywords are never written into or beside an archive's members.
    proc = mltag("export", str(zipped), "--store", str(store), "--model", "wd14", "--beside")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("is inside an archive or dataset") == len(PHOTOS) + 2, proc.stderr

    assert _snapshot(archives) == before, "an archive or the folder beside it was written"


def test_a_broken_archive_is_a_bad_image_cell(tmp_path: Path) -> None:
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"PK but not a zip")
    doc, _ = _analyze([fake], "--no-store")
    [image] = doc["images"]
    cell = image["results"]["wd14"]
    assert image["path"] == str(fake) and cell["status"] == "bad_image" and "as a zip archive" in cell["message"]
