"""Small JPEG thumbnails as data: URIs, so an HTML report is one file that needs nothing else.

A photo that cannot be read (moved, truncated, not an image, a decompression bomb) gives a reason
instead of a thumbnail: the report shows a placeholder and never fails because of one image.

HEIC/HEIF and JPEG XL open through Pillow once pillow-heif and pillow-jxl-plugin register their
openers; a camera RAW's thumbnail is its embedded preview (LibRaw through rawpy, which imports
numpy: imported here only, when a RAW is drawn), or a half-size develop when it has none. Each is
imported on first use, never at start-up.

`cached_thumbnail`: the thumbnails of `mltag serve` and the HTML report are kept in the user's
cache folder (orchestrator/paths.py thumbnails_dir), named by the image's sha256 and size, so each
photo is decoded once for both: a moved photo keeps its thumbnail, an edited one (new content, new
sha256) gets a new one, and nothing is ever written beside the photos.
"""

from __future__ import annotations

import base64
import io
import os
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Any, cast

from PIL import Image, ImageOps

from orchestrator.archives import find_member, read_member
from orchestrator.images import RAW_SUFFIXES

THUMB_SIZE = 256
JPEG_QUALITY = 80
FORMAT_PLUGIN_SUFFIXES = frozenset({".heic", ".heif", ".hif", ".jxl"})  # Pillow reads these through plugins


def _to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB; transparency onto white, high bit depths scaled (not clipped) like the runners do."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        img = img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    elif img.mode in ("I", "F"):
        # one band (I or F): a (min, max) pair, not one pair per band
        lo, hi = cast(tuple[float, float], img.getextrema())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        img = img.point(lambda v: (v - lo) * scale).convert("L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "PA", "RGBa"):
        canvas = Image.new("RGBA", img.size, (255, 255, 255, 255))
        canvas.alpha_composite(img.convert("RGBA"))
        return canvas.convert("RGB")
    return img.convert("RGB")


_openers: list[bool] = []


def _register_openers() -> None:
    """HEIC/HEIF and JPEG XL as Pillow formats, once, on the first thumbnail."""
    if _openers:
        return
    _openers.append(True)
    from pillow_heif import register_heif_opener

    register_heif_opener()
    import pillow_jxl  # noqa: F401 - importing it registers the JXL plugin


def _raw_image(path: Path | io.BytesIO) -> Image.Image:
    """A camera RAW as a Pillow image: its embedded preview (upright as the RAW says), or LibRaw's
    half-size develop when there is none."""
    import rawpy

    with rawpy.imread(path if isinstance(path, io.BytesIO) else str(path)) as raw:
        flip = int(raw.sizes.flip)
        try:
            thumb = raw.extract_thumb()
        except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
            return Image.fromarray(raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8))
    img: Image.Image
    if thumb.format == rawpy.ThumbFormat.JPEG:
        img = Image.open(io.BytesIO(bytes(thumb.data)))
        if img.getexif().get(0x0112, 1) != 1:
            return img  # the preview says its own orientation (exif_transpose below)
    else:
        img = Image.fromarray(cast(Any, thumb.data))  # a bitmap preview: an array (rawpy's types say bytes too)
    method = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}.get(flip)
    return img.transpose(method) if method is not None else img


def _open(path: Path, data: bytes | None = None) -> Image.Image:
    """The photo at `path`, or `data` (the bytes of an archive member named `path`)."""
    source = io.BytesIO(data) if data is not None else path
    if path.suffix.lower() in RAW_SUFFIXES:
        try:
            return _raw_image(source)
        except (OSError, ValueError):
            raise
        except Exception as exc:  # rawpy's LibRawError family
            raise OSError(f"cannot read this {path.suffix.lstrip('.').upper()} RAW: {exc}") from exc
    if path.suffix.lower() in FORMAT_PLUGIN_SUFFIXES:
        _register_openers()
    return Image.open(source)


def thumbnail_jpeg(
    path: Path, size: int = THUMB_SIZE, optimize: bool = True, draft: float = 2.0
) -> tuple[bytes | None, str | None]:
    """(JPEG bytes at most `size` px on its long side, None) or (None, why it failed). `draft`: a JPEG is
    decoded at the smallest 1/2 .. 1/8 scale still at least `draft` x `size` on both sides."""
    try:
        # A photo inside an archive or dataset (`photos.zip!/ward/01.jpg`): its member's bytes, read in place.
        member = find_member(path) if not os.path.lexists(path) else None
        data = read_member(member) if member is not None else None
        if member is None and not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the open forever
            return None, "not a regular file"
        # Pillow's own limit stands: past 2x MAX_IMAGE_PIXELS it raises (a bomb -> placeholder).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with _open(path, data) as img:
                reduced = int(size * draft)
                img.draft("RGB", (reduced, reduced))  # JPEG: decode at a reduced scale (fast on big photos)
                upright = ImageOps.exif_transpose(img)
                upright.thumbnail((size, size), Image.Resampling.LANCZOS)
                rgb = _to_rgb(upright)
        buf = io.BytesIO()
        rgb.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=optimize)
    except FileNotFoundError:
        return None, "file not found"
    except Exception as exc:  # any unreadable file is a placeholder, never a failed report
        return None, f"cannot read image: {type(exc).__name__}: {exc}"[:200]
    return buf.getvalue(), None


def thumbnail(path: Path, size: int = THUMB_SIZE) -> tuple[str | None, str | None]:
    """(data URI of a JPEG at most `size` px on its long side, None) or (None, why it failed)."""
    return data_uri(thumbnail_jpeg(path, size))


def data_uri(made: tuple[bytes | None, str | None]) -> tuple[str | None, str | None]:
    """A thumbnail's JPEG bytes as a data: URI (or the reason it has none)."""
    data, error = made
    if data is None:
        return None, error
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii"), None


def cache_file(folder: Path, sha256: str, size: int) -> Path:
    return folder / sha256[:2] / f"{sha256}-{size}.jpg"


def cached_thumbnail(
    folder: Path, sha256: str, source: Path, size: int = THUMB_SIZE
) -> tuple[bytes | None, str | None]:
    """The thumbnail of the image `sha256` (stored at `source`) from the cache `folder`, else made and
    kept there. draft 1: a 24 MP JPEG is decoded at 1/8 (750 x 500) for a 256 px tile, still downsampled
    after. A cache that cannot be written (full, read-only) only costs making the thumbnail again."""
    cached = cache_file(folder, sha256, size)
    try:
        return cached.read_bytes(), None
    except OSError:
        pass
    data, error = thumbnail_jpeg(source, size, optimize=False, draft=1.0)
    if data is not None:
        try:  # written whole then renamed: a reader never sees half a file
            cached.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".part")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, cached)
        except OSError:
            pass
    return data, error
