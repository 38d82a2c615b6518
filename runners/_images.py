"""Decode image bytes safely: a bad image is that image's `bad_image`, never the runner's death.

Handles EXIF orientation, CMYK, 16-bit and float modes, palettes with transparency, animated
files (first frame) and decompression bombs (a pixel limit, enforced as an error).

Decoding at the size the model needs: given `need` (the adapter's `decode_need`, see
runners/base.py), a JPEG is decoded by libjpeg's DCT-domain scaling (Pillow's `draft`) at 1/2,
1/4 or 1/8 of its size, the smallest of those that is still at least `need` in both dimensions;
a 24 MP photo a 448 px model looks at then costs ~1/10 of a full decode. Other formats have no
such shortcut and are decoded once at full size. Without `need` (exact mode, or an adapter that
declares none) every image is decoded at full size, exactly as the model's reference code does.

Formats beyond Pillow's own (docs/architecture.md, "Photo formats"): HEIC/HEIF through pillow-heif
and JPEG XL through pillow-jxl-plugin, both registered as Pillow openers on first use; AVIF is
Pillow's own. Camera RAW files (known by their suffix, `RAW_SUFFIXES`: TIFF-based RAWs would
otherwise open as the small TIFF in their first directory) go through rawpy (LibRaw): the embedded
JPEG preview when it is at least the size the model needs (decoded like any JPEG, DCT scaling
included), else LibRaw's develop, half-size when that is still enough. `raw` (infer option, CLI
`--raw`): "auto" (that rule), "preview" (the preview whatever its size, develop if there is none)
or "develop". `info["decoded_from"]` says which ran. Every env pins the same versions of these
libraries, so every env gives the same pixels for the same file.
"""

from __future__ import annotations

import io
import os
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
# Camera RAW suffixes (lower case), the same list as orchestrator/images.py (a test keeps them equal).
RAW_SUFFIXES = frozenset({".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".pef", ".srw"})
RAW_MODES = ("auto", "preview", "develop")
# LibRaw's orientation codes (sizes.flip) -> the EXIF orientation that means the same rotation.
_FLIP_TO_EXIF = {0: 1, 3: 3, 5: 8, 6: 6}

# (upright width, upright height) of the original -> the smallest upright (width, height) that
# preprocessing can start from without losing what it keeps; None: the full image.
Need = Callable[[int, int], "tuple[int, int] | None"]


class BadImage(Exception):
    """The bytes are not a decodable, safe image."""


@dataclass
class DecodedImage:
    id: str
    name: str
    pil: Image.Image | None  # "RGB" or "RGBA", 8 bits per channel, upright; None: text only
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
        img = img.convert("RGB")  # fully opaque alpha carries nothing
    return img


_openers_registered = False


def _register_openers() -> None:
    """HEIC/HEIF and JPEG XL as Pillow formats (once). An env without these packages still decodes
    everything else; such a file is then a bad_image (Pillow cannot identify it)."""
    global _openers_registered
    if _openers_registered:
        return
    _openers_registered = True
    try:
        from pillow_heif import register_heif_opener

        register_heif_opener()
    except ImportError:
        pass
    try:
        import pillow_jxl  # noqa: F401 - importing it registers the JXL plugin
    except ImportError:
        pass


def decode_options(options: dict[str, Any]) -> dict[str, Any]:
    """The infer options that `decode` takes: `max_pixels` (the pixel limit) and `raw` (--raw)."""
    return {key: options[key] for key in ("max_pixels", "raw") if key in options}


def is_raw_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in RAW_SUFFIXES


def decode(
    image_id: str,
    name: str,
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    need: Need | None = None,
    raw: str = "auto",
) -> DecodedImage:
    """Decode encoded image bytes into an upright 8-bit RGB(A) image, or raise BadImage.

    `info` describes the original image (upright width and height, format, mode, frames, EXIF
    orientation) plus what was decoded: `decoded_width`, `decoded_height`, `draft` (JPEG DCT
    scaling used) and `draft_scale` (1, 2, 4 or 8). A camera RAW (by the suffix of `name`) is
    decoded by `decode_raw` (`raw`: auto, preview or develop).
    """
    if not data:
        raise BadImage("empty file (0 bytes)")
    if is_raw_name(name):
        return decode_raw(image_id, name, data, max_pixels=max_pixels, need=need, mode=raw)
    _register_openers()
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
    info = {
        "width": width,
        "height": height,
        "format": fmt,
        "mode": original_mode,
        "frames": frames,
        "exif_orientation": exif_orientation,
        "decoded_width": img.width,
        "decoded_height": img.height,
        "draft": scale > 1,
        "draft_scale": scale,
    }
    return DecodedImage(image_id, name, img, info)


def _upright(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    return (size[1], size[0]) if orientation in _SWAPS_SIDES else size


def decode_raw(
    image_id: str,
    name: str,
    data: bytes,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    need: Need | None = None,
    mode: str = "auto",
) -> DecodedImage:
    """A camera RAW through rawpy (LibRaw): its embedded JPEG preview or a develop (module doc).

    `info`: width and height are the RAW's upright developed size (what the need is asked of),
    `format` "RAW", `raw_format` the suffix, `decoded_from` "raw-preview" or "raw-develop",
    `preview_width`/`preview_height` (the preview's upright size, when there is a JPEG preview),
    `half_size` (a develop at half size), `preview_error` (a damaged preview, developed instead) and
    the decoded size and JPEG draft as for other files."""
    if mode not in RAW_MODES:
        raise BadImage(f"unknown raw mode {mode!r} ({', '.join(RAW_MODES)})")
    try:
        import rawpy
    except ImportError as exc:
        raise BadImage("camera RAW needs rawpy, which this model's env lacks (re-build it: mltag setup-envs)") from exc
    raw_format = os.path.splitext(name)[1].lstrip(".").upper()
    Image.MAX_IMAGE_PIXELS = max_pixels  # the preview JPEG's limit
    try:
        with rawpy.imread(io.BytesIO(data)) as raw:
            sizes = raw.sizes
            orientation = _FLIP_TO_EXIF.get(int(sizes.flip), 1)
            width, height = _upright((int(sizes.width), int(sizes.height)), orientation)
            if width * height > max_pixels:
                raise BadImage(f"decompression bomb refused: {width}x{height} px is over the limit of {max_pixels} px")
            want = asked_size(need, width, height) if need is not None else (width, height)
            want = want or (width, height)
            preview = _raw_preview(raw) if mode != "develop" else None
            info: dict[str, Any] = {
                "width": width,
                "height": height,
                "format": "RAW",
                "raw_format": raw_format,
                "mode": "RAW",
                "frames": 1,
                "exif_orientation": orientation,
            }
            if preview is not None:
                pil, preview_orientation = preview
                size = _upright(pil.size, preview_orientation or orientation)
                info.update(preview_width=size[0], preview_height=size[1])
                if mode == "preview" or (size[0] >= want[0] and size[1] >= want[1]):
                    try:
                        return _decode_preview(image_id, name, pil, preview_orientation, orientation, need, info)
                    except Exception as exc:  # noqa: BLE001 - a damaged preview: the RAW itself may be fine
                        info["preview_error"] = f"{type(exc).__name__}: {exc}"[:200]
            half = want[0] <= width // 2 and want[1] <= height // 2
            rgb = raw.postprocess(half_size=half, use_camera_wb=True, output_bps=8)
    except BadImage:
        raise
    except Exception as exc:  # rawpy's LibRawError family, and whatever a damaged file makes LibRaw raise
        raise BadImage(f"cannot decode {raw_format} RAW: {type(exc).__name__}: {exc}") from exc
    img = Image.fromarray(rgb).convert("RGB")  # LibRaw has already applied the orientation
    info.update(
        decoded_from="raw-develop",
        half_size=half,
        decoded_width=img.width,
        decoded_height=img.height,
        draft=False,
        draft_scale=1,
    )
    return DecodedImage(image_id, name, img, info)


def _raw_preview(raw: Any) -> tuple[Image.Image, int] | None:
    """The RAW's embedded preview, opened lazily (a JPEG is not decoded yet), and its own EXIF
    orientation (0: it has none); None when there is no preview LibRaw can read."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        try:
            pil = Image.open(io.BytesIO(bytes(thumb.data)))
            return pil, int(pil.getexif().get(0x0112, 0))
        except Exception:  # noqa: BLE001 - a damaged preview: the RAW itself may be fine (develop it)
            return None
    return Image.fromarray(thumb.data).convert("RGB"), 0  # a bitmap preview, in sensor orientation


def _decode_preview(
    image_id: str, name: str, pil: Image.Image, own: int, orientation: int, need: Need | None, info: dict[str, Any]
) -> DecodedImage:
    """The preview, upright: its own EXIF orientation if it has one, else the RAW's; a JPEG preview
    drafted to the need like any JPEG."""
    scale = 1
    if need is not None and pil.format in DRAFT_FORMATS:
        w, h = _upright(pil.size, own or orientation)
        scale = _draft(pil, asked_size(need, w, h), (own or orientation) in _SWAPS_SIDES)
    pil.load()
    img = ImageOps.exif_transpose(pil) if own else _orient(pil, orientation)
    img = _normalise_mode(img)
    info.update(
        decoded_from="raw-preview",
        decoded_width=img.width,
        decoded_height=img.height,
        draft=scale > 1,
        draft_scale=scale,
    )
    return DecodedImage(image_id, name, img, info)


def _orient(img: Image.Image, orientation: int) -> Image.Image:
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(orientation)
    return img.transpose(method) if method is not None else img


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
