"""Photos inside archives and datasets (orchestrator/archives.py): listing, hashing through the
store's stat cache, reading members back, odd names, damaged members, thumbnails, the lazy pyarrow.
The CLI's own test is tests/integration/test_archives_cli.py."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from orchestrator import archives
from orchestrator.archives import find_member, list_members
from orchestrator.errors import ImageDiscoveryError
from orchestrator.images import Inside, discover, hash_files, raw_path
from orchestrator.report.thumbnails import thumbnail
from orchestrator.store import ResultStore

OLD_NS = 1_600_000_000 * 10**9  # far from now: a container modified just now is not cached (racy)
ODD = b"caf\xe9 latin-1.jpg"  # not UTF-8: a tar keeps the exact bytes


def _jpeg(colour: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG")
    return buf.getvalue()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    os.utime(path, ns=(OLD_NS, OLD_NS))
    return path


def _tar(path: Path, members: dict[bytes, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(os.fsdecode(name))
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    os.utime(path, ns=(OLD_NS, OLD_NS))
    return path


def _hash(files: list[Path], inside: Inside, **kw: object) -> list[tuple[str, str, int, str | None]]:
    return [(r.name, r.sha256, r.size_bytes, r.error) for r in hash_files(files, inside=inside, **kw)]  # type: ignore[arg-type]


def test_zip_members_listed_hashed_and_read(tmp_path: Path) -> None:
    photos = {
        "a/01.jpg": _jpeg("red"),
        "b.PNG": _jpeg("blue"),
        "notes.txt": b"x",
        ".hidden.jpg": _jpeg("red"),
        "a/": b"",
    }
    zipped = _zip(tmp_path / "photos.zip", photos)
    inside: Inside = {}
    files = discover([zipped], inside=inside)
    assert [os.fsdecode(f) for f in files] == [f"{zipped}!/a/01.jpg", f"{zipped}!/b.PNG"]
    refs = hash_files(files, inside=inside)
    for ref, name in zip(refs, ["a/01.jpg", "b.PNG"], strict=True):
        assert ref.error is None and ref.sha256 == hashlib.sha256(photos[name]).hexdigest()
        assert ref.size_bytes == len(photos[name]) and ref.read() == photos[name]


def test_tar_members_with_odd_names_read_in_any_order(tmp_path: Path) -> None:
    photos = {b"./x/" + ODD: _jpeg("red"), b"y.jpg": _jpeg("green"), b"z.jpg": _jpeg("blue")}
    for mode, name in (("w:gz", "p.tar.gz"), ("w", "p.tar"), ("w:xz", "p.tar.xz")):
        tarred = _tar(tmp_path / name, photos, mode)
        inside: Inside = {}
        files = discover([tarred], inside=inside)
        assert [os.fsencode(f) for f in files] == [os.fsencode(tarred) + b"!/" + n.removeprefix(b"./") for n in photos]
        assert raw_path(files[0]) is not None  # the non-UTF-8 name travels as its exact bytes
        refs = hash_files(files, inside=inside)
        for ref in reversed(refs):  # backwards: a compressed stream starts over, still the right bytes
            assert ref.read() == photos[next(n for n in photos if os.fsencode(ref.path).endswith(n.lstrip(b".")))]


def test_damaged_members_and_archives_say_why(tmp_path: Path) -> None:
    good, bad = _jpeg("red"), _jpeg("white")
    with zipfile.ZipFile(tmp_path / "p.zip", "w") as zf:  # stored: the damage below is a CRC error
        zf.writestr("good.jpg", good)
        zf.writestr("bad.jpg", bad)
    data = (tmp_path / "p.zip").read_bytes()
    at = data.index(bad) + 100
    (tmp_path / "p.zip").write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :])
    full = _tar(tmp_path / "t.tar", {b"a.jpg": good, b"b.jpg": bad}, "w")
    (tmp_path / "cut.tar").write_bytes(full.read_bytes()[: 2 * 512 + 1024 + 300])  # b.jpg cut short
    (tmp_path / "fake.zip").write_bytes(b"not a zip")
    inside: Inside = {}
    files = discover([tmp_path / "p.zip", tmp_path / "cut.tar", tmp_path / "fake.zip"], inside=inside)
    got = {Path(name).name: error for name, _, _, error in _hash(files, inside)}
    assert got["good.jpg"] is None and got["a.jpg"] is None
    assert got["bad.jpg"] is not None and "Bad CRC-32" in got["bad.jpg"] and "bad.jpg in p.zip" in got["bad.jpg"]
    assert got["b.jpg"] is not None and "truncated" in got["b.jpg"]
    assert got["fake.zip"] is not None and "cannot read fake.zip as a zip archive" in got["fake.zip"]


def test_an_archive_without_images_is_refused_like_an_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageDiscoveryError, match="no images"):
        discover([_zip(tmp_path / "docs.zip", {"a.txt": b"x"})], inside={})


def test_archives_inside_a_folder_are_not_opened(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    _zip(folder / "p.zip", {"a.jpg": _jpeg("red")})
    with pytest.raises(ImageDiscoveryError, match="opened only when named"):
        discover([folder], inside={})


def test_members_are_cached_on_the_archives_stat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hashed: list[str] = []
    real = archives.hash_member

    def counting(member: archives.Member) -> tuple[str, int]:
        hashed.append(member.name)
        return real(member)

    monkeypatch.setattr("orchestrator.images.hash_member", counting)
    db = ResultStore(tmp_path / "store.sqlite")
    zipped = _zip(tmp_path / "p.zip", {"a.jpg": _jpeg("red"), "b.jpg": _jpeg("blue")})
    inside: Inside = {}
    files = discover([zipped], inside=inside)
    first = _hash(files, inside, cache=db)
    assert hashed == ["a.jpg", "b.jpg"]
    assert _hash(files, inside, cache=db) == first and hashed == ["a.jpg", "b.jpg"], "an unchanged archive is re-read"
    assert _hash(files, inside, cache=db, rehash=True) == first and len(hashed) == 4  # --rehash reads them
    _zip(zipped, {"a.jpg": _jpeg("green"), "b.jpg": _jpeg("blue")})  # new content, new archive stat
    os.utime(zipped, ns=(OLD_NS, OLD_NS + 1))
    inside = {}
    changed = _hash(discover([zipped], inside=inside), inside, cache=db)
    assert len(hashed) == 6 and changed[0][1] != first[0][1] and changed[1] == first[1]


def test_parquet_rows_read_a_row_group_at_a_time(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    photos = [_jpeg(c) for c in ("red", "green", "blue")]
    rows = [{"bytes": p, "path": f"{i}.jpg"} for i, p in enumerate(photos)] + [{"bytes": None, "path": "elsewhere.jpg"}]
    pq.write_table(
        pa.table({"label": [0, 1, 2, 3], "image": rows}), tmp_path / "train-00000-of-00001.parquet", row_group_size=2
    )
    inside: Inside = {}
    files = discover([tmp_path / "train-00000-of-00001.parquet"], inside=inside)
    assert [f.name for f in files] == ["0", "1", "2", "3"] and files[0].parent.name == "train"
    refs = hash_files(files, inside=inside)
    assert [r.sha256 for r in refs[:3]] == [hashlib.sha256(p).hexdigest() for p in photos]
    assert [r.read() for r in refs[:3]] == photos
    assert refs[3].error is not None and "names a file, elsewhere.jpg" in refs[3].error
    (tmp_path / "plain.parquet").write_bytes((tmp_path / "train-00000-of-00001.parquet").read_bytes())
    assert [f.parent.name for f in discover([tmp_path / "plain.parquet"], inside={})] == ["train"] * 4
    pq.write_table(pa.table({"label": [0]}), tmp_path / "labels.parquet")
    inside = {}
    files = discover([tmp_path / "labels.parquet"], inside=inside)
    assert "no image column" in str(inside[files[0]])


def test_datasets_written_by_the_datasets_library(tmp_path: Path) -> None:
    """Hugging Face's own writers: an Image feature to parquet, save_to_disk of a Dataset (two Arrow
    shards) and of a DatasetDict (two splits)."""
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    photos = [_jpeg(c) for c in ("red", "green", "blue")]
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": p, "path": None} for p in photos], "label": [0, 1, 2]}, features=features
    )
    ds.to_parquet(str(tmp_path / "d.parquet"))
    ds.save_to_disk(str(tmp_path / "one"), num_shards=2)
    datasets.DatasetDict({"train": ds, "test": ds.select([2, 0])}).save_to_disk(str(tmp_path / "dict"))
    assert len(list((tmp_path / "one").glob("*.arrow"))) == 2
    cases = {
        "d.parquet": [("train", i, photos[i]) for i in range(3)],
        "one": [("train", i, photos[i]) for i in range(3)],
        "dict": [("train", i, photos[i]) for i in range(3)] + [("test", 0, photos[2]), ("test", 1, photos[0])],
    }
    for name, want in cases.items():
        inside: Inside = {}
        files = discover([tmp_path / name], inside=inside)
        assert [os.fsdecode(f) for f in files] == [f"{tmp_path / name}!/{split}/{row}" for split, row, _ in want]
        refs = hash_files(files, inside=inside)
        for ref, (_, _, data) in zip(reversed(refs), reversed(want), strict=True):
            assert ref.error is None and ref.sha256 == hashlib.sha256(data).hexdigest() and ref.read() == data
        assert find_member(files[-1]) is not None


def test_thumbnails_read_members(tmp_path: Path) -> None:
    zipped = _zip(tmp_path / "p.zip", {"w/a.jpg": _jpeg("red", (512, 256))})
    tarred = _tar(tmp_path / "p.tgz", {ODD: _jpeg("red", (512, 256))})
    for path in (Path(f"{zipped}!/w/a.jpg"), Path(os.fsdecode(os.fsencode(tarred) + b"!/" + ODD))):
        uri, why = thumbnail(path)
        assert why is None and uri is not None, why
        assert Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).size == (256, 128)
        assert find_member(path) is not None
    uri, why = thumbnail(Path(f"{zipped}!/w/gone.jpg"))
    assert uri is None and why == "file not found"


def test_listing_keeps_no_member_bytes(tmp_path: Path) -> None:
    tarred = _tar(tmp_path / "p.tar", {b"%d.jpg" % i: b"x" * 1000 for i in range(50)}, "w")
    members = list_members(tarred)
    assert len(members) == 50 and all(m.size == 1000 and m.offset > 0 for m in members)


def test_cli_start_up_imports_no_pyarrow() -> None:
    code = (
        "import sys, orchestrator.cli, orchestrator.images, orchestrator.archives; "
        "print([m for m in ('pyarrow', 'datasets', 'pandas') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_hub_dataset_id_reads_its_parquet_files_from_the_hugging_face_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hf://datasets/ORG/NAME[@REV]` through huggingface_hub's own snapshot_download, offline, on a
    Hub cache laid out as a download leaves it (no network here: the online fetch is the same call)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = hub / "datasets--urbex--asylums"
    data = repo / "snapshots" / commit / "data"
    data.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    photos = [_jpeg(c) for c in ("red", "green")]
    pq.write_table(
        pa.table({"image": [{"bytes": p, "path": f"{i}.jpg"} for i, p in enumerate(photos)]}),
        data / "test-00000-of-00001.parquet",
    )
    for given in ("hf://datasets/urbex/asylums", f"hf://datasets/urbex/asylums@{commit}"):
        inside: Inside = {}
        files = discover([Path(given)], inside=inside, offline=True)
        assert [f"{f.parent.name}/{f.name}" for f in files] == ["test/0", "test/1"], given
        assert [r.read() for r in hash_files(files, inside=inside)] == photos
    with pytest.raises(ImageDiscoveryError, match="not in the Hugging Face cache and mltag is offline.*hf download"):
        discover([Path("hf://datasets/urbex/factories")], inside={}, offline=True)
