"""Photos in the formats beyond Pillow's own, written by the libraries themselves for the tests.

- DNG: a real Adobe DNG (TIFF with DNGVersion, a Bayer CFA mosaic, a colour matrix), written with
  tifffile: a scene is mosaicked through an RGGB pattern, so LibRaw's develop gives the scene back;
  optionally with an embedded JPEG preview in IFD0 (the raw mosaic then in a SubIFD), the layout
  cameras and Adobe's converter use.
- HEIC: pillow-heif's encoder (libheif + x265); AVIF: Pillow's own encoder.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image

DNG_VERSION = (1, 4, 0, 0)
Tag = tuple[int, str, int, Any, bool]  # tifffile's extratags: (code, dtype, count, value, in IFD)
# XYZ -> camera: the identity (a camera that sees sRGB's primaries would have ~this shape); SRATIONAL.
_IDENTITY = [1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1]


def scene(width: int, height: int) -> Image.Image:
    """A photo-like RGB scene with structure in every region (gradients and blocks of colour)."""
    gradient = Image.linear_gradient("L").resize((width, height))
    red = Image.radial_gradient("L").resize((width, height))
    blue = gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = Image.merge("RGB", (red, gradient, blue))
    for i in range(4):
        x, y = width * i // 5, height * i // 5
        img.paste((40 + 50 * i, 200 - 40 * i, 90), (x, y, x + width // 6, y + height // 6))
    return img


def _mosaic(img: Image.Image, white: int = 4095) -> np.ndarray:
    """The RGGB Bayer mosaic of an RGB image, 12-bit values in uint16."""
    rgb = np.asarray(img.convert("RGB"), dtype=np.float64) / 255.0
    linear = rgb**2.2  # a sensor records linear light
    cfa = np.empty(rgb.shape[:2], dtype=np.uint16)
    cfa[0::2, 0::2] = linear[0::2, 0::2, 0] * white
    cfa[0::2, 1::2] = linear[0::2, 1::2, 1] * white
    cfa[1::2, 0::2] = linear[1::2, 0::2, 1] * white
    cfa[1::2, 1::2] = linear[1::2, 1::2, 2] * white
    return cfa


def _raw_tags(orientation: int) -> list[Tag]:
    return [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: R G / G B
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
        (50714, "H", 1, 0, True),  # BlackLevel
        (50717, "H", 1, 4095, True),  # WhiteLevel
    ]


def _ifd0_tags(orientation: int) -> list[Tag]:
    return [
        (271, "s", 0, "mltag", True),  # Make
        (272, "s", 0, "test DNG", True),  # Model
        (274, "H", 1, orientation, True),  # Orientation
        (50706, "B", 4, DNG_VERSION, True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, "mltag test DNG", True),  # UniqueCameraModel
        (50721, "2i", 9, _IDENTITY, True),  # ColorMatrix1
        (50728, "2I", 3, [1, 1, 1, 1, 1, 1], True),  # AsShotNeutral: daylight-balanced already
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
    ]


def _never_called(*_args: object, **_kwargs: object) -> bytes:
    raise AssertionError("the DNG preview is written as JPEG bytes already encoded")


def write_dng(
    path: Path,
    width: int = 256,
    height: int = 192,
    *,
    preview: tuple[int, int] | None = None,
    orientation: int = 1,
    image: Image.Image | None = None,
) -> Path:
    """A DNG of `image` (default: `scene`), width x height; `preview`: also embed a JPEG preview of
    that size (baseline JPEG, stored in IFD0 as DNG previews are)."""
    img = (image or scene(width, height)).convert("RGB").resize((width, height))
    cfa = _mosaic(img)
    with tifffile.TiffWriter(path) as tif:
        if preview is None:
            tif.write(cfa, photometric=32803, subfiletype=0, extratags=_ifd0_tags(orientation) + _raw_tags(orientation))
            return path
        buf = io.BytesIO()
        img.resize(preview).save(buf, "JPEG", quality=90)
        jpeg = buf.getvalue()
        # IFD0: the preview, its JPEG bytes written as they are (one strip); SubIFD: the raw mosaic.
        # tifffile looks a JPEG encoder up (imagecodecs, not installed) even for bytes already encoded.
        tifffile.TIFF.COMPRESSORS._codecs.setdefault(7, _never_called)  # type: ignore[attr-defined]
        tif.write(
            iter([jpeg]),
            shape=(preview[1], preview[0], 3),
            dtype=np.uint8,
            photometric="ycbcr",
            compression=7,
            subfiletype=1,
            subifds=1,
            rowsperstrip=preview[1],
            extratags=_ifd0_tags(orientation),
        )
        tif.write(cfa, photometric=32803, subfiletype=0, extratags=_raw_tags(orientation))
    return path


def write_heic(path: Path, image: Image.Image, quality: int = 90) -> Path:
    from pillow_heif import register_heif_opener

    register_heif_opener()
    image.save(path, format="HEIF", quality=quality)
    return path
