"""Photo formats beyond Pillow's own: the runner-side decode (runners/_images.py) of camera RAW
(DNG written by tifffile, decoded by rawpy/LibRaw), HEIC, AVIF and JPEG XL; discovery and the
RAW+JPEG pair rule (orchestrator/images.py); the report's thumbnails of these formats."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from orchestrator import images as orch_images
from orchestrator.report.thumbnails import thumbnail
from runners import _images
from runners._images import BadImage, decode
from tests.formats import scene, write_dng, write_heic


def _need(side: int):  # the shorter side at least `side`, like a CLIP-style adapter's need
    return lambda w, h: (max(1, round(w * side / min(w, h))), max(1, round(h * side / min(w, h))))


def test_raw_suffixes_agree_between_orchestrator_and_runners() -> None:
    assert orch_images.RAW_SUFFIXES == _images.RAW_SUFFIXES
    for suffix in (".heic", ".heif", ".avif", ".jxl", ".dng", ".cr3", ".nef", ".arw"):
        assert suffix in orch_images.IMAGE_SUFFIXES


def test_dng_preview_used_when_large_enough_else_develop(tmp_path: Path) -> None:
    dng = write_dng(tmp_path / "shot.dng", 256, 192, preview=(256, 192)).read_bytes()
    small = decode("a", "shot.dng", dng, need=_need(48))
    assert small.info["decoded_from"] == "raw-preview" and small.info["format"] == "RAW"
    assert small.info["raw_format"] == "DNG" and small.info["draft_scale"] == 4 and small.image().size == (64, 48)
    # a need larger than the preview (but within the RAW): LibRaw's develop, full size (half is too small)
    small_preview = write_dng(tmp_path / "p.dng", 256, 192, preview=(128, 96)).read_bytes()
    big = decode("b", "p.dng", small_preview, need=_need(150))
    assert big.info["decoded_from"] == "raw-develop" and big.info["half_size"] is False
    assert big.image().size == (256, 192) and big.info["preview_width"] == 128
    half = decode("c", "p.dng", small_preview, need=_need(96), raw="develop")
    assert half.info["decoded_from"] == "raw-develop" and half.info["half_size"] is True
    assert half.image().size == (128, 96)
    forced = decode("d", "p.dng", small_preview, need=_need(150), raw="preview")
    assert forced.info["decoded_from"] == "raw-preview" and forced.image().size == (128, 96)


def test_dng_without_preview_develops_and_keeps_colours(tmp_path: Path) -> None:
    red = Image.new("RGB", (64, 48), (220, 30, 30))
    dng = write_dng(tmp_path / "red.DNG", 64, 48, image=red).read_bytes()
    img = decode("a", "red.DNG", dng, raw="preview")  # no preview in the file: develop anyway
    assert img.info["decoded_from"] == "raw-develop" and "preview_width" not in img.info
    r, g, b = np.asarray(img.image(), dtype=float).mean(axis=(0, 1))
    assert r > 150 and g < 80 and b < 80, (r, g, b)


def test_raw_orientation_applies_to_preview_and_develop_alike(tmp_path: Path) -> None:
    dng = write_dng(tmp_path / "tall.dng", 256, 192, preview=(256, 192), orientation=6).read_bytes()
    preview = decode("a", "tall.dng", dng, raw="preview")
    develop = decode("a", "tall.dng", dng, raw="develop")
    assert preview.image().size == develop.image().size == (192, 256)
    assert (preview.info["width"], preview.info["height"]) == (192, 256)
    # the same scene, the same way up: the preview is close to the develop pixel by pixel (its
    # brightness differs: a develop is not the JPEG a camera makes), and far from it unrotated
    p = np.asarray(preview.image().convert("L"), dtype=float)
    d = np.asarray(develop.image().convert("L"), dtype=float)
    upright = np.corrcoef(p.ravel(), d.ravel())[0, 1]
    flipped = np.corrcoef(p.ravel(), np.rot90(d, 2).ravel())[0, 1]
    assert upright > 0.9 and upright > flipped + 0.2, (upright, flipped)


@pytest.mark.parametrize("name,data", [("broken.nef", b"not a raw file" * 100), ("empty.cr3", b"")])
def test_unreadable_raw_is_a_bad_image_with_the_reason(name: str, data: bytes) -> None:
    with pytest.raises(BadImage) as info:
        decode("a", name, data)
    assert ("cannot decode" in str(info.value) and "RAW" in str(info.value)) or "empty" in str(info.value)


def test_truncated_dng_is_a_bad_image(tmp_path: Path) -> None:
    dng = write_dng(tmp_path / "t.dng", 256, 192).read_bytes()
    with pytest.raises(BadImage, match="cannot decode DNG RAW"):
        decode("a", "t.dng", dng[:2000])


def test_damaged_preview_falls_back_to_the_develop(tmp_path: Path) -> None:
    data = bytearray(write_dng(tmp_path / "p.dng", 256, 192, preview=(256, 192)).read_bytes())
    start = data.index(b"\xff\xd8\xff")  # the embedded JPEG preview
    sos = data.index(b"\xff\xda", start)  # its scan: damage the entropy-coded data, keep the header
    data[sos + 20 : sos + 2000] = b"\x00\xff" * 990
    img = decode("a", "p.dng", bytes(data), need=_need(48))
    assert img.info["decoded_from"] == "raw-develop" and "preview_error" in img.info, img.info
    assert img.image().size == (128, 96)


def test_raw_pixel_limit(tmp_path: Path) -> None:
    dng = write_dng(tmp_path / "t.dng", 256, 192).read_bytes()
    with pytest.raises(BadImage, match="decompression bomb"):
        decode("a", "t.dng", dng, max_pixels=1000)


def test_heic_avif_jxl_decode(tmp_path: Path) -> None:
    img = scene(96, 64)
    heic = write_heic(tmp_path / "a.heic", img).read_bytes()
    avif, jxl = io.BytesIO(), io.BytesIO()
    img.save(avif, "AVIF", quality=90)
    import pillow_jxl  # noqa: F401 - registers the JXL writer too

    img.save(jxl, "JXL", quality=90)
    ref = np.asarray(img, dtype=float)
    for name, data, fmt in (
        ("a.heic", heic, "HEIF"),
        ("a.avif", avif.getvalue(), "AVIF"),
        ("a.jxl", jxl.getvalue(), "JXL"),
    ):
        out = decode("x", name, data)
        assert out.info["format"] == fmt and out.image().size == (96, 64) and out.image().mode == "RGB"
        assert np.abs(np.asarray(out.image(), dtype=float) - ref).mean() < 8, name  # lossy, but the scene
    with pytest.raises(BadImage, match="cannot decode"):
        decode("x", "bad.heic", heic[:200])


def test_pair_rule(tmp_path: Path) -> None:
    for name in ("IMG_1.CR3", "img_1.jpg", "IMG_2.nef", "IMG_3.dng", "IMG_3.heic", "sub/IMG_3.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    files = orch_images.discover([tmp_path])
    kept, pairs = orch_images.pair_raws(files)
    names = sorted(str(p.relative_to(tmp_path)) for p in kept)
    # IMG_1: one photo (the JPEG); IMG_2: a RAW alone; IMG_3.dng: its JPEG is in another folder,
    # and a HEIC is not the JPEG of a pair
    assert names == ["IMG_2.nef", "IMG_3.dng", "IMG_3.heic", "img_1.jpg", "sub/IMG_3.jpg"]
    assert pairs == {tmp_path / "img_1.jpg": [tmp_path / "IMG_1.CR3"]}
    refs = orch_images.hash_files(kept, seen_as=pairs)
    assert [r.seen_as for r in refs if r.path.name == "img_1.jpg"] == [(tmp_path / "IMG_1.CR3",)]


def test_thumbnails_of_raw_and_heic(tmp_path: Path) -> None:
    with_preview = write_dng(tmp_path / "a.dng", 256, 192, preview=(256, 192), orientation=6)
    without = write_dng(tmp_path / "b.dng", 128, 96)
    heic = write_heic(tmp_path / "c.heic", scene(300, 200))
    broken = tmp_path / "d.nef"
    broken.write_bytes(b"nothing")
    for path, size in ((with_preview, (192, 256)), (without, (64, 48)), (heic, (256, 171))):
        uri, why = thumbnail(path)
        assert why is None and uri is not None, path

        thumb = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
        assert thumb.size == size, (path, thumb.size)
    uri, why = thumbnail(broken)
    assert uri is None and why is not None and "RAW" in why


def test_cli_start_up_imports_no_decoder() -> None:
    code = (
        "import sys, orchestrator.cli, orchestrator.report.thumbnails; "
        "print(sorted(m for m in ('rawpy', 'numpy', 'pillow_heif', 'pillow_jxl') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
