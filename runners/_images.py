"""Decode image bytes safely: a bad image is that image's `bad_image`, never the runner's death.

Handles EXIF orientation, CMYK, 16-bit and float modes, palettes with transparency, animated
files (first frame) and decompression bombs (a pixel limit, enforced as an error).

Decoding at the size the model needs: given `need` (the adapter's `decode_need`, see
runners/base.py), a JPEG is decoded by libjpeg's DCT-domain scaling (Pillow's `draft`) at 1/2,
1/4 or 1/8 of its size, the smallest of those that is still at least `need` in both dimensions;
a 24 MP photo a 448 px model looks at then costs ~1/10 of a full decode. Other formats have no
such shortcut and are decoded once at full size. Without `need` (exact mode, or an adapter that
declares none) every image is decoded at full size, exactly as the model's reference code does.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from PIL import Image, ImageOps

# Urbex photos reach ~50 MP; 250 MP leaves room for panoramas and stops pixel bombs early.
DEFAULT_MAX_PIXELS = 250_000_000
# EXIF orientations that swap width and height (transpose, rotate 90/270, transverse).
_SWAPS_SIDES = frozenset({5, 6, 7, 8})
DRAFT_FORMATS = frozenset({"JPEG", "MPO"})  # MPO: cameras' multi-picture JPEGs, frame 0 is the photo

# (upright width, upright height) of the original -> the smallest upright (width, height) that
# preprocessing can start from without losing what it keeps; None: the full image.
Need = Callable[[int, int], "tuple[int, int] | None"]


class BadImage(Exception):
    """The bytes are not a decodable, safe image."""


@dataclass
class DecodedImage:
    id: str
    name: str
    pil: Image.Image | None               # "RGB" or "RGBA", 8 bits per channel, upright; None: text only
    info: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)  # ImageIn.context (the judge's input)

    def image(self) -> Image.Image:
        """The decoded image; an error for a text-only request."""
        if self.pil is None:
            raise ValueError(f"{self.name}: no image data was sent (a text-only request)")
        return self.pil

    def rgb(self, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
        """The image as RGB; transparent pixels composited onto `background`."""
        pil = self.image()
        if pil.mode == "RGB":
            return pil
        canvas = Image.new("RGBA", pil.size, background + (255,))
        canvas.alpha_composite(pil)
        return canvas.convert("RGB")


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale high-bit-depth single-channel modes to 8 bits instead of clipping them."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        img = img.convert("I")
        return img.point(lambda v: v * (1 / 256)).convert("L")
    if img.mode in ("I", "F"):
        # one band (I or F): a (min, max) pair, not one pair per band
        lo, hi = cast(tuple[float, float], img.getextrema())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        return img.point(lambda v: (v - lo) * scale).convert("L")
    return img


def _normalise_mode(img: Image.Image) -> Image.Image:
    img = _to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    elif img.mode == "1" or img.mode == "L" or img.mode == "CMYK" or img.mode not in ("RGB", "RGBA"):
        img = img.convert("RGB")
    if img.mode == "RGBA" and cast(tuple[tuple[int, int], ...], img.getextrema())[3][0] == 255:
        img = img.convert("RGB")          # fully opaque alpha carries nothing
    return img


def decode(image_id: str, name: str, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
           need: Need | None = None) -> DecodedImage:
    """Decode encoded image bytes into an upright 8-bit RGB(A) image, or raise BadImage.

    `info` describes the original image (upright width and height, format, mode, frames, EXIF
    orientation) plus what was decoded: `decoded_width`, `decoded_height`, `draft` (JPEG DCT
    scaling used) and `draft_scale` (1, 2, 4 or 8).
    """
    if not data:
        raise BadImage("empty file (0 bytes)")
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x the limit: treat that as a bomb too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data))
            fmt = img.format
            frames = getattr(img, "n_frames", 1)
            original_mode = img.mode
            exif_orientation = img.getexif().get(0x0112, 1)
            if frames > 1:
                img.seek(0)
            swap = exif_orientation in _SWAPS_SIDES
            width, height = (img.height, img.width) if swap else img.size
            drafts = fmt in DRAFT_FORMATS
            scale = _draft(img, asked_size(need, width, height), swap) if need is not None and drafts else 1
            img.load()
            img = ImageOps.exif_transpose(img)
            img = _normalise_mode(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"decompression bomb refused: {exc}") from exc
    except BadImage:
        raise
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        raise BadImage(f"cannot decode image: {type(exc).__name__}: {exc}") from exc
    info = {"width": width, "height": height, "format": fmt, "mode": original_mode,
            "frames": frames, "exif_orientation": exif_orientation,
            "decoded_width": img.width, "decoded_height": img.height, "draft": scale > 1, "draft_scale": scale}
    return DecodedImage(image_id, name, img, info)


def asked_size(need: Need, width: int, height: int) -> tuple[int, int] | None:
    """The adapter's need; if it cannot say (an odd size its own preprocessing will refuse with its
    own error), the full image, so that the image is not mistaken for a bad one."""
    try:
        return need(width, height)
    except Exception:  # noqa: BLE001 - any failure means: no reduction
        return None


def _draft(img: Image.Image, want: tuple[int, int] | None, swap: bool) -> int:
    """Ask the JPEG decoder for the largest DCT scale-down (1/2, 1/4, 1/8) that keeps the image at
    least `want` (upright width, height) in both dimensions: Pillow's draft picks exactly that
    (scale <= stored size // wanted size). Returns the scale used (1: a full decode)."""
    if not want:
        return 1
    w, h = (max(int(v), 1) for v in want)
    stored_width = img.width
    result = img.draft(None, (h, w) if swap else (w, h))  # None keeps the mode ("L"/"YCbCr" would convert)
    if result is None:  # not a single-tile JPEG: decoded in full
        return 1
    return round(stored_width / result[1][2])
