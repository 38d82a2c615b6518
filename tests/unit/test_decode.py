"""The decode contract (runners/_images.py): exact mode is today's full decode, bit for bit; fast
mode drafts a JPEG to the smallest DCT scale at or above the adapter's need, never below; other
formats are decoded once at full size; `info` always describes the original image."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat

from runners._images import BadImage, decode

STORED = (1200, 800)  # landscape as stored; EXIF 6 shows it as 800 x 1200 portrait


def _photo(size: tuple[int, int] = STORED) -> Image.Image:
    """Asymmetric content (a gradient plus a block in one corner), so a wrong rotation shows."""
    img = Image.merge(
        "RGB",
        [
            Image.linear_gradient("L").resize(size),
            Image.radial_gradient("L").resize(size),
            Image.linear_gradient("L").rotate(90).resize(size),
        ],
    )
    img.paste((255, 0, 0), (0, 0, size[0] // 4, size[1] // 4))
    return img


def _jpeg(img: Image.Image, orientation: int = 1, **kw: object) -> bytes:
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    img.save(buf, "JPEG", quality=90, exif=exif.tobytes(), **kw)
    return buf.getvalue()


def _reference(data: bytes) -> Image.Image:
    """The full decode mltag did before fast decoding: open, load, EXIF transpose, to RGB."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return ImageOps.exif_transpose(img).convert("RGB")


@pytest.mark.parametrize("orientation", [1, 6])
def test_exact_mode_is_the_full_decode_bit_for_bit(orientation: int) -> None:
    data = _jpeg(_photo(), orientation)
    img = decode("a", "a.jpg", data)
    assert img.image().tobytes() == _reference(data).tobytes() and img.image().size == _reference(data).size
    assert img.info["draft"] is False and img.info["draft_scale"] == 1


@pytest.mark.parametrize(
    "need", [(448, 299), (300, 200), (150, 100), (149, 99), (151, 101), (1, 1), (1200, 800), (5000, 10)]
)
def test_fast_jpeg_is_drafted_to_the_smallest_scale_at_or_above_the_need(need: tuple[int, int]) -> None:
    img = decode("a", "a.jpg", _jpeg(_photo()), need=lambda w, h: need)
    width, height = img.image().size
    scale = img.info["draft_scale"]
    # Never below the need (a need above the original gets the original, never an upscale).
    assert width >= min(need[0], STORED[0]) and height >= min(need[1], STORED[1])
    assert (width, height) == (-(-STORED[0] // scale), -(-STORED[1] // scale))
    assert scale in (1, 2, 4, 8) and img.info["draft"] == (scale > 1)
    if scale < 8:  # the next scale down would have been too small: the scale is the smallest allowed
        assert -(-STORED[0] // (2 * scale)) < need[0] or -(-STORED[1] // (2 * scale)) < need[1]
    assert (img.info["width"], img.info["height"]) == STORED, "info describes the original"
    assert (img.info["decoded_width"], img.info["decoded_height"]) == (width, height)


def test_draft_keeps_the_exif_orientation() -> None:
    data = _jpeg(_photo(), orientation=6)
    asked: list[tuple[int, int]] = []

    def need(width: int, height: int) -> tuple[int, int]:
        asked.append((width, height))
        return (300, 450)

    img = decode("a", "a.jpg", data, need=need)
    assert asked == [(800, 1200)], "the need is asked about the upright original"
    assert img.image().size == (400, 600) and img.info["draft_scale"] == 2
    assert (img.info["width"], img.info["height"], img.info["exif_orientation"]) == (800, 1200, 6)
    full = _reference(data).resize(img.image().size, Image.Resampling.BOX)
    wrong = _reference(data).transpose(Image.Transpose.ROTATE_180).resize(img.image().size, Image.Resampling.BOX)
    same = max(ImageStat.Stat(ImageChops.difference(img.image(), full)).mean)
    assert same < 4, "the drafted image is the full decode, smaller, the same way up"
    assert max(ImageStat.Stat(ImageChops.difference(img.image(), wrong)).mean) > 10 * same


def test_non_jpeg_is_decoded_once_at_full_size() -> None:
    buf = io.BytesIO()
    _photo().save(buf, "PNG")
    asked: list[tuple[int, int]] = []

    def need(width: int, height: int) -> tuple[int, int]:
        asked.append((width, height))
        return (10, 10)

    img = decode("a", "a.png", buf.getvalue(), need=need)
    assert img.image().size == STORED and img.info["draft"] is False
    assert img.image().tobytes() == _reference(buf.getvalue()).tobytes()


def test_cmyk_jpeg_drafted_reports_cmyk_and_gives_rgb() -> None:
    img = decode("a", "a.jpg", _jpeg(_photo().convert("CMYK")), need=lambda w, h: (150, 100))
    assert img.info["mode"] == "CMYK" and img.image().mode == "RGB" and img.info["draft_scale"] == 8


def test_grey_jpeg_drafted_stays_grey_content() -> None:
    img = decode("a", "a.jpg", _jpeg(_photo().convert("L")), need=lambda w, h: (300, 200))
    assert img.info["mode"] == "L" and img.image().mode == "RGB" and img.image().size == (300, 200)
    red, green, blue = img.image().split()
    assert red.tobytes() == green.tobytes() == blue.tobytes()


def test_bomb_is_refused_whatever_the_need() -> None:
    with pytest.raises(BadImage, match="decompression bomb"):
        decode("a", "a.jpg", _jpeg(_photo()), max_pixels=100_000, need=lambda w, h: (8, 8))


def test_multi_picture_jpeg_drafts_its_first_frame() -> None:
    """Cameras write MPO files (the photo, then previews): frame 0 is drafted like a JPEG."""
    buf = io.BytesIO()
    _photo().save(buf, "MPO", save_all=True, append_images=[_photo((600, 400))])
    img = decode("a", "a.jpg", buf.getvalue(), need=lambda w, h: (150, 100))
    assert (img.info["format"], img.info["frames"], img.info["width"], img.info["height"]) == ("MPO", 2, *STORED)
    assert img.image().size == (150, 100) and img.info["draft_scale"] == 8


def test_a_need_that_fails_means_a_full_decode_not_a_bad_image() -> None:
    def need(width: int, height: int) -> tuple[int, int]:
        raise ValueError("aspect ratio out of range")

    img = decode("a", "a.jpg", _jpeg(_photo()), need=need)
    assert img.image().size == STORED and img.info["draft"] is False
