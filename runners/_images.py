"""Decode image bytes safely: a bad image is that image's `bad_image`, never the runner's death.

Handles EXIF orientation, CMYK, 16-bit and float modes, palettes with transparency, animated
files (first frame) and decompression bombs (a pixel limit, enforced as an error).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageOps

# Urbex photos reach ~50 MP; 250 MP leaves room for panoramas and stops pixel bombs early.
DEFAULT_MAX_PIXELS = 250_000_000


class BadImage(Exception):
    """The bytes are not a decodable, safe image."""


@dataclass
class DecodedImage:
    id: str
    name: str
    pil: Image.Image | None               # "RGB" or "RGBA", 8 bits per channel, upright; None: text only
    info: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)  # ImageIn.context (the judge's input)

    def rgb(self, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
        """The image as RGB; transparent pixels composited onto `background`."""
        if self.pil is None:
            raise ValueError(f"{self.name}: no image data was sent (a text-only request)")
        if self.pil.mode == "RGB":
            return self.pil
        canvas = Image.new("RGBA", self.pil.size, background + (255,))
        canvas.alpha_composite(self.pil)
        return canvas.convert("RGB")


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale high-bit-depth single-channel modes to 8 bits instead of clipping them."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        img = img.convert("I")
        return img.point(lambda v: v * (1 / 256)).convert("L")
    if img.mode in ("I", "F"):
        lo, hi = img.getextrema()
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
    if img.mode == "RGBA" and img.getextrema()[3][0] == 255:
        img = img.convert("RGB")          # fully opaque alpha carries nothing
    return img


def decode(image_id: str, name: str, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode encoded image bytes into an upright 8-bit RGB(A) image, or raise BadImage."""
    if not data:
        raise BadImage("empty file (0 bytes)")
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x the limit: treat that as a bomb too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format
            frames = getattr(img, "n_frames", 1)
            original_mode = img.mode
            exif_orientation = img.getexif().get(0x0112, 1)
            if frames > 1:
                img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
            img = _normalise_mode(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"decompression bomb refused: {exc}") from exc
    except BadImage:
        raise
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        raise BadImage(f"cannot decode image: {type(exc).__name__}: {exc}") from exc
    info = {"width": img.width, "height": img.height, "format": fmt, "mode": original_mode,
            "frames": frames, "exif_orientation": exif_orientation}
    return DecodedImage(image_id, name, img, info)
