"""`mltag export` through the real CLI, read back by an independent reader: exiftool (Debian package
libimage-exiftool-perl, which .ci/run installs). Stores are written directly (no runner): the cells
are what a tagger, a zero-shot model and a captioner store.

exiftool absent: these tests skip, except in CI (CI=true), where they fail."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from orchestrator.images import hash_file
from orchestrator.paths import PROJECT_ROOT
from orchestrator.store import CellMeta, ResultStore

EXIFTOOL = shutil.which("exiftool")
IN_CI = os.environ.get("CI", "").lower() == "true"
pytestmark = pytest.mark.skipif(
    EXIFTOOL is None and not IN_CI, reason="exiftool not installed (Debian: libimage-exiftool-perl)"
)


@pytest.fixture(autouse=True)
def _exiftool_in_ci() -> None:
    """In CI these tests run: without exiftool each one fails, saying why."""
    if EXIFTOOL is None:
        pytest.fail("exiftool is missing in CI: .ci/run installs libimage-exiftool-perl")


RAW_NAME = b"caf\xe9 latin-1.jpg"  # not UTF-8


def tag(name: str, score: float, category: str = "general") -> dict[str, Any]:
    return {"name": name, "score": score, "category": category}


# What the store holds per photo and model (a WD14-like tagger, a CLIP-like zero-shot model, a captioner).
CELLS: dict[str, dict[str, dict[str, Any]]] = {
    "hall.jpg": {
        "wd14": {
            "status": "ok",
            "tags": [tag("broken_window", 0.9), tag("rust", 0.6), tag("indoors", 0.3), tag("general", 0.95, "rating")],
        },
        # rust: eval rounds the best threshold to 0.5, above this score; the tag must still be exported
        "clip": {"status": "ok", "tags": [tag("broken window", 0.7), tag("rust", 0.4999996), tag("sky", 0.1)]},
        "florence2": {"status": "ok", "caption": "A derelict hall with broken windows and rust.", "tags": []},
    },
    "sub dir/ünïcode café.jpg": {
        "wd14": {"status": "ok", "tags": [tag("staircase", 0.8), tag("graffiti", 0.4), tag("straße <&>", 0.2)]},
        "clip": {"status": "ok", "tags": [tag("staircase", 0.6), tag("graffiti", 0.55)]},
        "florence2": {"status": "ok", "caption": "A staircase covered in graffiti.", "tags": []},
    },
    "scan.tif": {
        "wd14": {"status": "ok", "tags": [tag("door", 0.7)]},
        "clip": {"status": "ok", "tags": [tag("door", 0.9)]},
    },
    "shot.png": {"wd14": {"status": "ok", "tags": [tag("car", 0.9)]}, "clip": {"status": "error", "message": "boom"}},
}
KINDS = {"wd14": "tagger", "clip": "zero-shot", "florence2": "captioner"}


def _photo(path: Path, seed: int) -> None:
    """A small photo of distinct content, with Exif (an artist) that must survive --embed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.merge("RGB", [Image.effect_noise((96, 64), 30 + 10 * seed + 3 * c) for c in range(3)])
    exif = Image.Exif()
    exif[0x013B] = "The Photographer"  # Artist
    fmt = {".jpg": "JPEG", ".tif": "TIFF", ".png": "PNG"}[path.suffix]
    buf = io.BytesIO()
    image.save(buf, fmt, exif=exif)
    path.write_bytes(buf.getvalue())


@pytest.fixture()
def archive(tmp_path: Path) -> tuple[Path, Path]:
    """Photos (one with a name that is not UTF-8) and a store holding three models' cells for them."""
    root = tmp_path / "photos"
    paths = {name: root / name for name in CELLS}
    for seed, path in enumerate(paths.values()):
        _photo(path, seed)
    raw = os.path.join(os.fsencode(root), RAW_NAME)
    shutil.copyfile(paths["hall.jpg"], raw)
    with open(raw, "ab") as stream:
        stream.write(b"distinct")  # other content than hall.jpg
    db_path = tmp_path / "store.sqlite"
    db = ResultStore(db_path)
    db.begin_run("run1", time.time(), {}, ["analyze"])
    refs = {name: hash_file(path) for name, path in paths.items()}
    raw_ref = hash_file(Path(os.fsdecode(raw)))
    db.record_images("run1", [*refs.values(), raw_ref])
    for model, kind in KINDS.items():
        db.put_model(
            "run1",
            model,
            {
                "name": model,
                "kind": kind,
                "adapter": "runners.x",
                "env": "e",
                "hub_id": "h",
                "revision": "r",
                "status": "ok",
                "notes": [],
            },
        )
    for name, cells in CELLS.items():
        for model, cell in cells.items():
            db.put_cell("run1", refs[name].sha256, model, cell, CellMeta(options_key="k", kind=KINDS[model]))
    db.put_cell(
        "run1",
        raw_ref.sha256,
        "wd14",
        {"status": "ok", "tags": [tag("latin", 0.8)]},
        CellMeta(options_key="k", kind="tagger"),
    )
    db.finish_run("run1", time.time())
    db.close()
    return root, db_path


def mltag(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=300,
    )


def exif_read(path: str | bytes | Path) -> dict[str, Any]:
    """What exiftool reads from one file (sidecar or photo): XMP keywords, hierarchy, description, Exif artist."""
    assert EXIFTOOL is not None
    proc = subprocess.run(
        [
            EXIFTOOL,
            "-j",
            "-XMP-dc:Subject",
            "-XMP-lr:HierarchicalSubject",
            "-XMP-digiKam:TagsList",
            "-XMP-dc:Description",
            "-XMP-dc:Title",
            "-XMP-xmp:Rating",
            "-EXIF:Artist",
            os.fsencode(path),
        ],
        capture_output=True,
        check=True,
    )
    [found] = json.loads(proc.stdout.decode("utf-8", "replace"))

    def listed(key: str) -> list[str] | None:
        value = found.get(key)
        return None if value is None else [str(v) for v in value] if isinstance(value, list) else [str(value)]

    return {
        "subject": listed("Subject"),
        "hierarchy": listed("HierarchicalSubject"),
        "tagslist": listed("TagsList"),
        "description": found.get("Description"),
        "title": found.get("Title"),
        "rating": found.get("Rating"),
        "artist": found.get("Artist"),
    }


def snapshot(root: Path) -> dict[bytes, tuple[bytes, int]]:
    """Every file under root (by its exact name): content and mtime."""
    out = {}
    for folder, _, files in os.walk(os.fsencode(root)):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as stream:
                out[path] = (stream.read(), os.stat(path).st_mtime_ns)
    return out


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[list[str]]:
    """A command prefix that runs with `folder` read-only: a read-only bind mount in a private mount
    namespace (root ignores file modes), else the folder's modes (as a normal user)."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")] if p.is_dir()}
        for p in modes:
            p.chmod(0o555)
        try:
            yield []
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if unshare is None or probe.returncode != 0:
        pytest.skip("running as root without user namespaces: no way to make a folder read-only here")
    yield [
        unshare,
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        'mount --bind -o ro "$0" "$0" || exit 97; exec "$@"',
        str(folder),
    ]


def mltag_in(prefix: list[str], *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "orchestrator", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=300,
    )


def test_out_mirrors_the_tree_of_a_read_only_archive(archive: tuple[Path, Path], tmp_path: Path) -> None:
    root, db = archive
    subprocess.run(
        [EXIFTOOL or "exiftool", "-q", "-o", str(root / "scan.tif.xmp"), "-XMP-dc:Subject=archive"], check=True
    )  # digiKam's or darktable's sidecar already beside a photo
    before = snapshot(root)
    out = tmp_path / "xmp"
    with read_only(root) as prefix:
        proc = mltag_in(prefix, "export", root, "--model", "wd14", "--out", out, "--store", db)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(root) == before, "the archive is untouched"
    hall = exif_read(out / "hall.jpg.xmp")
    assert hall["subject"] == ["broken_window", "rust", "indoors"], (
        "the model's tags as it gave them, best first; no rating tag"
    )
    assert hall["hierarchy"] == ["mltag|wd14|broken_window", "mltag|wd14|rust", "mltag|wd14|indoors"]
    assert hall["tagslist"] == ["mltag/wd14/broken_window", "mltag/wd14/rust", "mltag/wd14/indoors"]
    assert exif_read(out / "sub dir" / "ünïcode café.jpg.xmp")["subject"] == ["staircase", "graffiti", "straße <&>"]
    assert exif_read(out / "scan.tif.xmp")["subject"] == ["archive", "door"], "the sidecar beside it merged in"
    assert exif_read(os.path.join(os.fsencode(out), RAW_NAME + b".xmp"))["subject"] == ["latin"]
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.xmp") if "latin" not in p.name)
    assert written == ["hall.jpg.xmp", "scan.tif.xmp", "shot.png.xmp", "sub dir/ünïcode café.jpg.xmp"]
    assert "5 photo(s), 9 keyword(s), 5 file(s) written" in proc.stderr and "1 merged with existing XMP" in proc.stderr

    synonyms = tmp_path / "synonyms.txt"
    synonyms.write_text("rusty, rust = corrosion\n", encoding="utf-8")
    again = mltag(
        "export",
        root,
        "--model",
        "wd14",
        "--out",
        out,
        "--store",
        db,
        "--threshold",
        "0.5",
        "--normalise",
        "--hierarchy",
        "none",
        "--synonyms",
        synonyms,
    )
    assert again.returncode == 0, again.stderr
    hall = exif_read(out / "hall.jpg.xmp")
    assert hall["subject"] == ["broken window", "corrosion"], (
        "mltag's earlier keywords replaced; normalised names, then the synonym map"
    )
    assert hall["hierarchy"] is None and hall["tagslist"] is None, "--hierarchy none: flat keywords only"


def test_beside_merges_with_a_sidecar_that_holds_other_keywords(archive: tuple[Path, Path]) -> None:
    root, db = archive
    sidecar = root / "hall.jpg.xmp"
    subprocess.run(
        [
            EXIFTOOL or "exiftool",
            "-q",
            "-o",
            str(sidecar),
            "-XMP-dc:Subject=family",
            "-XMP-dc:Subject=rust",
            "-XMP-lr:HierarchicalSubject=People|Anna",
            "-XMP-dc:Title=Trip",
            "-XMP-xmp:Rating=4",
            "-XMP-dc:Description=My own words",
        ],
        check=True,
    )
    proc = mltag("export", root, "--model", "wd14", "--beside", "--store", db, "--caption-from", "florence2")
    assert proc.returncode == 0, proc.stderr
    hall = exif_read(sidecar)
    assert hall["subject"] == ["family", "rust", "broken_window", "indoors"], "the user's keywords first, kept"
    assert hall["hierarchy"] == ["People|Anna", "mltag|wd14|broken_window", "mltag|wd14|rust", "mltag|wd14|indoors"]
    assert (hall["title"], hall["rating"], hall["description"]) == ("Trip", 4, "My own words"), (
        "other fields kept; a description the user wrote is never replaced"
    )
    assert "1 kept their own description" in proc.stderr
    stairs = exif_read(root / "sub dir" / "ünïcode café.jpg.xmp")
    assert stairs["description"] == "A staircase covered in graffiti."

    second = mltag("export", root, "--model", "clip", "--beside", "--store", db, "--threshold", "0.6")
    assert second.returncode == 0, second.stderr
    hall = exif_read(sidecar)
    assert hall["subject"] == ["family", "rust", "broken window"], (
        "wd14's keywords replaced by clip's; 'rust' stays: the user had it before mltag"
    )
    assert hall["hierarchy"] == ["People|Anna", "mltag|clip|broken window"]
    assert exif_read(root / "sub dir" / "ünïcode café.jpg.xmp")["description"] == "A staircase covered in graffiti.", (
        "without --caption the description is left alone"
    )

    third = mltag("export", root, "--model", "clip", "--beside", "--store", db, "--threshold", "0.6")
    assert "unchanged" in third.stderr and third.returncode == 0, "the same export again rewrites nothing"

    stem = mltag("export", root / "hall.jpg", "--model", "wd14", "--beside", "--sidecar-name", "stem", "--store", db)
    assert stem.returncode == 0, stem.stderr
    assert exif_read(root / "hall.xmp")["subject"] == ["broken_window", "rust", "indoors"]


def test_embed_keeps_the_pixels_and_the_other_metadata(archive: tuple[Path, Path]) -> None:
    root, db = archive
    photos = [root / "hall.jpg", root / "scan.tif", root / "shot.png"]
    pixels = {p: Image.open(p).tobytes() for p in photos}
    png = (root / "shot.png").read_bytes()
    subprocess.run(
        [
            EXIFTOOL or "exiftool",
            "-q",
            "-overwrite_original",
            "-XMP-dc:Subject=family",
            "-XMP-xmp:Rating=5",
            str(root / "hall.jpg"),
        ],
        check=True,
    )  # XMP another tool wrote
    pixels[root / "hall.jpg"] = Image.open(root / "hall.jpg").tobytes()
    jpeg = (root / "hall.jpg").read_bytes()
    proc = mltag("export", root, "--model", "wd14", "--embed", "--store", db)
    assert proc.returncode == 0, proc.stderr
    assert "INTO the photo files" in proc.stderr
    for photo in photos:
        assert Image.open(photo).tobytes() == pixels[photo], f"{photo.name}: decoded pixels identical"
    embedded = (root / "hall.jpg").read_bytes()
    start_of_scan = b"\xff\xda"  # the compressed image data, from the start-of-scan marker to the end: the same bytes
    assert embedded[embedded.index(start_of_scan) :] == jpeg[jpeg.index(start_of_scan) :] and embedded != jpeg
    hall = exif_read(root / "hall.jpg")
    assert hall["subject"] == ["family", "broken_window", "rust", "indoors"] and hall["rating"] == 5
    assert hall["artist"] == "The Photographer", "the Exif is kept"
    assert exif_read(root / "scan.tif")["subject"] == ["door"]
    assert exif_read(os.path.join(os.fsencode(root), RAW_NAME))["subject"] == ["latin"], "a name that is not UTF-8"
    assert (root / "shot.png").read_bytes() == png, "PNG: skipped, said so"
    assert "skipped: " in proc.stderr and "shot.png" in proc.stderr
    assert not list(root.rglob("*.xmp")) and not list(root.rglob(".mltag-*")), "no sidecar, no temporary file left"


def test_beside_on_a_read_only_folder_is_a_one_line_error(archive: tuple[Path, Path]) -> None:
    root, db = archive
    with read_only(root) as prefix:
        proc = mltag_in(prefix, "export", root, "--model", "wd14", "--beside", "--store", db)
    assert proc.returncode == 1
    error, fix = proc.stderr.strip().splitlines()  # one line, and its fix
    assert error.startswith("error: cannot write ") and (
        ".xmp: Read-only file system" in error  # the mount
        or ".xmp: Permission denied" in error
    )  # the modes
    assert fix.strip().startswith("fix: --out DIR")


def test_consensus_and_dry_run(archive: tuple[Path, Path], tmp_path: Path) -> None:
    root, db = archive
    out = tmp_path / "xmp"
    dry = mltag(
        "export", root, "--model", "consensus", "--out", out, "--store", db, "--dry-run", "--consensus-min", "2"
    )
    assert dry.returncode == 0, dry.stderr
    assert not out.exists(), "--dry-run writes nothing"
    lines = dict(line.split(" (new): ") for line in dry.stdout.strip().splitlines())
    assert lines[str(out / "hall.jpg.xmp")] == "broken window, rust", "the tags 2+ models gave, normalised"
    assert lines[str(out / "sub dir" / "ünïcode café.jpg.xmp")] == "staircase, graffiti"
    assert "dry run, nothing written: consensus's tags:" in dry.stderr
    real = mltag("export", root, "--model", "consensus", "--out", out, "--store", db, "--consensus-min", "2")
    assert real.returncode == 0, real.stderr
    assert exif_read(out / "hall.jpg.xmp")["hierarchy"] == ["mltag|consensus|broken window", "mltag|consensus|rust"]


def test_best_takes_the_top_model_of_the_ranking(archive: tuple[Path, Path], tmp_path: Path) -> None:
    root, db = archive
    labels = tmp_path / "labels.csv"
    labels.write_text(
        f'image,tags\n{root / "hall.jpg"},"broken window, rust"\n'
        f'{root / "sub dir" / "ünïcode café.jpg"},"staircase, graffiti"\n',
        encoding="utf-8",
    )
    proc = mltag("export", root, "--model", "best", "--labels", labels, "--out", tmp_path / "xmp", "--store", db)
    assert proc.returncode == 0, proc.stderr
    assert "best: clip (F1 1.000 at threshold 0.5" in proc.stderr, proc.stderr
    assert exif_read(tmp_path / "xmp" / "hall.jpg.xmp")["subject"] == ["broken window", "rust"], "clip from 0.5 up"


def test_best_from_the_stores_labels_beside_the_photos_changes_nothing_else(archive: tuple[Path, Path]) -> None:
    """The issue's "done when": `mltag export PHOTOS --model best --beside` with the labels in the store."""
    root, db = archive
    with ResultStore(db) as store:
        truth = {
            hash_file(root / "hall.jpg").sha256: ["broken window", "rust"],
            hash_file(root / "sub dir" / "ünïcode café.jpg").sha256: ["staircase", "graffiti"],
        }
        assert store.import_labels(truth, who="test") == 2
    before = snapshot(root)
    proc = mltag("export", root, "--model", "best", "--beside", "--store", db)
    assert proc.returncode == 0, proc.stderr
    assert "best: clip (F1 1.000 at threshold 0.5, over 2 labelled photo(s)" in proc.stderr, proc.stderr
    after = snapshot(root)
    new = {os.fsdecode(os.path.relpath(p, os.fsencode(root))) for p in after.keys() - before.keys()}
    assert new == {"hall.jpg.xmp", "sub dir/ünïcode café.jpg.xmp", "scan.tif.xmp"}, (
        "a sidecar for each photo with clip's tags >= 0.5 (shot.png: clip failed; the latin-1 photo: no clip cell)"
    )
    assert {p: after[p] for p in before} == before, "nothing else in the folder changed"
    assert exif_read(root / "hall.jpg.xmp")["subject"] == ["broken window", "rust"]
    assert exif_read(root / "hall.jpg.xmp")["hierarchy"] == ["mltag|clip|broken window", "mltag|clip|rust"]
    assert exif_read(root / "sub dir" / "ünïcode café.jpg.xmp")["subject"] == ["staircase", "graffiti"]
    assert exif_read(root / "scan.tif.xmp")["subject"] == ["door"]


def test_where_must_be_said(archive: tuple[Path, Path]) -> None:
    root, db = archive
    proc = mltag("export", root, "--model", "wd14", "--store", db)
    assert proc.returncode == 2 and "--out DIR" in proc.stderr and "--beside" in proc.stderr
    assert not list(root.rglob("*.xmp"))
    no_caption = mltag("export", root, "--model", "wd14", "--beside", "--caption", "--store", db)
    assert no_caption.returncode == 2 and "wd14 gives tags, not captions" in no_caption.stderr
    consensus = mltag("export", root, "--model", "consensus", "--beside", "--caption", "--store", db)
    assert consensus.returncode == 2 and "--caption-from MODEL" in consensus.stderr
    assert not list(root.rglob("*.xmp"))
    zero_shot = mltag("export", root, "--model", "clip", "--beside", "--store", db)
    assert zero_shot.returncode == 2 and "clip is zero-shot" in zero_shot.stderr and "--threshold" in zero_shot.stderr
    best = mltag("export", root, "--model", "best", "--beside", "--store", db)
    assert best.returncode == 2 and "holds none yet" in best.stderr and "--labels labels.csv" in best.stderr


def test_the_raw_name_photo_is_found_by_its_bytes(archive: tuple[Path, Path]) -> None:
    root, db = archive
    proc = mltag("export", root, "--model", "wd14", "--beside", "--store", db)
    assert proc.returncode == 0, proc.stderr
    sidecar = os.path.join(os.fsencode(root), RAW_NAME + b".xmp")
    assert os.path.exists(sidecar), "the sidecar's name keeps the photo's exact bytes"
    assert exif_read(sidecar)["subject"] == ["latin"]
    with pytest.raises(UnicodeDecodeError):  # the name really is not UTF-8
        RAW_NAME.decode("utf-8")


def test_embed_leaves_a_read_only_photo_and_writes_through_a_link(archive: tuple[Path, Path], tmp_path: Path) -> None:
    root, db = archive
    (root / "scan.tif").chmod(0o444)
    scan = (root / "scan.tif").read_bytes()
    elsewhere = tmp_path / "elsewhere.jpg"
    (root / "hall.jpg").rename(elsewhere)
    (root / "hall.jpg").symlink_to(elsewhere)
    proc = mltag("export", root, "--model", "wd14", "--embed", "--store", db)
    assert proc.returncode == 1, proc.stderr
    assert "failed: " in proc.stderr and "scan.tif: the photo file is read-only" in proc.stderr
    assert "error: 1 photo(s) could not be exported" in proc.stderr
    assert (root / "scan.tif").read_bytes() == scan
    assert (root / "hall.jpg").is_symlink(), "the link stays a link"
    assert exif_read(elsewhere)["subject"] == ["broken_window", "rust", "indoors"]


def test_stem_sidecars_never_shared_by_two_photos(archive: tuple[Path, Path]) -> None:
    root, db = archive
    (root / "hall.CR2").write_bytes(b"a raw file's twin")
    proc = mltag("export", root / "hall.jpg", "--model", "wd14", "--beside", "--sidecar-name", "stem", "--store", db)
    assert proc.returncode == 0, proc.stderr
    assert "hall.CR2" in proc.stderr and "skipped" in proc.stderr
    assert not (root / "hall.xmp").exists(), "hall.xmp is the RAW's sidecar for Lightroom: not written"


def test_embed_into_a_dng(archive: tuple[Path, Path], tmp_path: Path) -> None:
    """A DNG-shaped TIFF (the DNGVersion tag: exiftool calls it DNG; no raw sensor data, which nothing here can
    write)."""
    from PIL import TiffImagePlugin

    _, db = archive
    folder = tmp_path / "raw"
    folder.mkdir()
    photo = folder / "frame.dng"
    info = TiffImagePlugin.ImageFileDirectory_v2()
    info[50706] = bytes([1, 4, 0, 0])  # DNGVersion
    info.tagtype[50706] = 1
    Image.effect_noise((64, 48), 40).convert("RGB").save(photo, "TIFF", tiffinfo=info)
    pixels = Image.open(photo).tobytes()
    with ResultStore(db) as store:
        store.begin_run("run2", time.time(), {}, ["analyze"])
        ref = hash_file(photo)
        store.record_images("run2", [ref])
        store.put_cell(
            "run2",
            ref.sha256,
            "wd14",
            {"status": "ok", "tags": [tag("film", 0.9)]},
            CellMeta(options_key="k", kind="tagger"),
        )
        store.finish_run("run2", time.time())
    proc = mltag("export", folder, "--model", "wd14", "--embed", "--store", db)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(photo).tobytes() == pixels
    found = subprocess.run(
        [EXIFTOOL or "exiftool", "-j", "-FileType", "-XMP-dc:Subject", str(photo)],
        capture_output=True,
        text=True,
        check=True,
    )
    [read] = json.loads(found.stdout)
    assert (read["FileType"], read["Subject"]) == ("DNG", "film")
