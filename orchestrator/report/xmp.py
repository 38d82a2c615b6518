"""XMP keywords for photo managers (`mltag export`): merge mltag's keywords into a photo's XMP, in a
sidecar or inside the photo, keeping everything else that is there.

Where the keywords go (the fields digiKam, darktable, Lightroom and Immich read):
- `dc:subject` (a Bag): the flat keywords;
- `lr:hierarchicalSubject` (a Bag): `mltag|<source>|<tag>` (Lightroom, darktable, digiKam);
- `digiKam:TagsList` (a Seq, as digiKam writes it): `mltag/<source>/<tag>`;
- `dc:description` (x-default): the caption, only when asked.
`<source>` is the model's name, or `consensus`. A `|` or `/` inside a tag would open a new level in
those paths, so in the hierarchy entries (only) it is written as `-`.

Which keywords are mltag's (so that a second export replaces them and nothing else): mltag's own
namespace (`NAMESPACE`, prefix `mltag`) records them in the same XMP packet:
- `mltag:keywords`: the flat keywords mltag ADDED to `dc:subject` (a keyword that was already there,
  put there by the user or another tool, is never recorded, so it is never removed);
- `mltag:source`, `mltag:threshold`: what the keywords came from;
- `mltag:description`: the caption mltag wrote (a description the user wrote is never replaced).
Hierarchy entries under `mltag|` / `mltag/` are mltag's by their path. Every other field, keyword
and hierarchy entry is kept as it was.

The library is pyexiv2 (Exiv2 through pybind11: wheels with Exiv2 inside, no system library, no
other program), imported only here, and this module only by `mltag export`. Two of its behaviours
are worked around, both checked by tests/integration/test_export.py:
- a list is always written as an rdf:Seq, but digiKam reads `lr:hierarchicalSubject` as a Bag only
  (darktable #4095) and `dc:subject` is a Bag by the standard: Exiv2's own array syntax
  (`KEY = "type=Bag"`, then `KEY[1]`, `KEY[2]`...) writes a Bag;
- Exiv2 mirrors a sidecar's XMP into IPTC / Exif on reading and copies them back on writing, which
  undoes a removed keyword and breaks the Bag syntax; a sidecar holds only XMP, so those mirrors
  are cleared before the change (never in a photo: its Exif and IPTC are kept).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import ExportError

NAMESPACE = "https://mltag.invalid/xmp/1.0/"  # .invalid (RFC 2606): a name no one else can own
PREFIX = "mltag"
SUBJECT = "Xmp.dc.subject"
HIERARCHY = "Xmp.lr.hierarchicalSubject"
TAGS_LIST = "Xmp.digiKam.TagsList"
DESCRIPTION = "Xmp.dc.description"
OURS = f"Xmp.{PREFIX}.keywords"
SOURCE = f"Xmp.{PREFIX}.source"
THRESHOLD = f"Xmp.{PREFIX}.threshold"
OUR_DESCRIPTION = f"Xmp.{PREFIX}.description"
X_DEFAULT = 'lang="x-default"'
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
LR_ROOT, DK_ROOT = "mltag|", "mltag/"
EMBEDDABLE = frozenset({".jpg", ".jpeg", ".jfif", ".jpe", ".tif", ".tiff", ".dng"})
SIDECAR_MIME = "application/rdf+xml"
EMBED_MIMES = frozenset({"image/jpeg", "image/tiff", "image/x-adobe-dng"})
# An XMP packet with nothing in it: what a new sidecar starts from (Exiv2 opens it as a sidecar).
EMPTY_PACKET = (
    '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
    '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>'
    '<?xpacket end="w"?>'
).encode()


@dataclass(frozen=True)
class PhotoKeywords:
    """What mltag writes for one photo."""

    keywords: list[str]  # flat, best first
    source: str  # the model's name, or "consensus"
    threshold: float | None = None
    caption: str | None = None  # for dc:description (None: leave the description alone)
    hierarchy: bool = True  # also lr:hierarchicalSubject and digiKam:TagsList


@dataclass(frozen=True)
class Merged:
    """The XMP after the merge, and what the merge did."""

    data: bytes
    changed: bool  # the XMP differs from what was there
    kept_description: bool = False  # a description that is not mltag's was kept (not replaced)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _text(text: str) -> str:
    """XML cannot hold control characters (the XMP toolkit would cut a keyword at a NUL): each becomes a space."""
    return " ".join(_CONTROL.sub(" ", text).split())


def _level(text: str) -> str:
    return text.replace("|", "-").replace("/", "-")


def _bag(key: str, items: list[str]) -> dict[str, Any]:
    """Exiv2's array syntax for a Bag (pyexiv2 writes every list as a Seq); None deletes the field."""
    if not items:
        return {key: None}
    return {key: "type=Bag", **{f"{key}[{i}]": item for i, item in enumerate(items, 1)}}


def changes(current: dict[str, Any], new: PhotoKeywords) -> tuple[dict[str, Any], bool]:
    """pyexiv2 `modify_xmp` changes that merge `new` into the XMP `current` (as `read_xmp` gives it):
    mltag's earlier keywords out, the new ones in, everything else kept; and whether a description
    that is not mltag's was kept."""
    keywords = list(dict.fromkeys(t for k in new.keywords if (t := _text(k))))
    earlier = set(_as_list(current.get(OURS)))
    subject = [k for k in dict.fromkeys(_as_list(current.get(SUBJECT))) if k not in earlier]
    theirs = set(subject)
    added = [k for k in keywords if k not in theirs]
    hierarchy = [h for h in _as_list(current.get(HIERARCHY)) if not h.startswith(LR_ROOT)]
    tags_list = [t for t in _as_list(current.get(TAGS_LIST)) if not t.startswith(DK_ROOT)]
    if new.hierarchy:
        hierarchy += [f"{LR_ROOT}{_level(new.source)}|{_level(k)}" for k in keywords]
        tags_list += [f"{DK_ROOT}{_level(new.source)}/{_level(k)}" for k in keywords]
    out: dict[str, Any] = {
        **_bag(SUBJECT, subject + added),
        **_bag(HIERARCHY, hierarchy),
        TAGS_LIST: tags_list or None,
        OURS: added or None,
        SOURCE: new.source,
        THRESHOLD: None if new.threshold is None else f"{new.threshold:g}",
    }
    kept = False
    if new.caption is not None:
        described = current.get(DESCRIPTION)
        languages = dict(described) if isinstance(described, dict) else {}
        if isinstance(described, str):
            languages[X_DEFAULT] = described
        mine = current.get(OUR_DESCRIPTION)
        if languages.get(X_DEFAULT) in (None, "", mine):
            caption = _CONTROL.sub(" ", new.caption)
            out[DESCRIPTION] = {**languages, X_DEFAULT: caption}
            out[OUR_DESCRIPTION] = caption
        else:
            kept = True
    return out, kept


@functools.lru_cache(maxsize=1)
def _pyexiv2() -> Any:
    """pyexiv2, with mltag's namespace registered and Exiv2's warnings muted (it prints them on
    stdout, where `--dry-run`'s list goes; its errors still raise)."""
    import pyexiv2

    pyexiv2.set_log_level(3)
    pyexiv2.registerNs(NAMESPACE, PREFIX)
    return pyexiv2


def merge(existing: bytes | None, new: PhotoKeywords, embed: bool = False) -> Merged:
    """`new` merged into `existing`: a sidecar's bytes (None: a new sidecar), or with `embed` a
    JPEG / TIFF / DNG photo's bytes, whose pixel data Exiv2 copies unchanged."""
    pyexiv2 = _pyexiv2()
    source = existing if existing is not None else EMPTY_PACKET
    try:
        image = pyexiv2.ImageData(source)
    except (RuntimeError, ValueError) as exc:
        what = "photo" if embed else "sidecar (not an XMP packet?)"
        raise ExportError(f"cannot read this {what}: {str(exc).strip().splitlines()[0]}") from exc
    try:
        mime = image.get_mime_type()
        if embed and mime not in EMBED_MIMES:
            raise ExportError(f"XMP is embedded in JPEG, TIFF and DNG files only, this is {mime}")
        if not embed and mime != SIDECAR_MIME:
            raise ExportError(f"this sidecar is not an XMP packet ({mime})")
        current = image.read_xmp()
        if not new.keywords and new.caption is None and not any(k.startswith(f"Xmp.{PREFIX}.") for k in current):
            return Merged(source, False)  # nothing to add, nothing of mltag's to take out
        modify, kept = changes(current, new)
        if not embed:  # the sidecar's IPTC / Exif are mirrors of its XMP (module docstring)
            image.clear_iptc()
            image.clear_exif()
        image.modify_xmp(modify)
        data = bytes(image.get_bytes())
    except (RuntimeError, ValueError) as exc:  # ValueError: a value that is not UTF-8
        raise ExportError(f"Exiv2 could not write the XMP: {str(exc).strip().splitlines()[0]}") from exc
    finally:
        image.close()
    return Merged(data, data != source, kept)


def read_keywords(data: bytes) -> dict[str, Any]:
    """The XMP of a sidecar or photo, as pyexiv2 reads it (for tests and `--dry-run`)."""
    image = _pyexiv2().ImageData(data)
    try:
        return dict(image.read_xmp())
    finally:
        image.close()


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes, like: Path | None = None) -> None:
    """Write `data` to `path` through a temporary file in the same folder, then one rename: a reader
    (or a crash) sees the old file or the new one, never half of one. The new file gets `like`'s
    permissions (the photo's, or the sidecar's it replaces), else the usual ones for a new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".mltag-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        if like is not None and like.exists():
            os.chmod(tmp, like.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
