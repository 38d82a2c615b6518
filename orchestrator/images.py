"""Find image files and read them as the bytes that travel to runners."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jfif"})


class ImageDiscoveryError(Exception):
    pass


@dataclass(frozen=True)
class ImageRef:
    path: Path
    sha256: str
    size_bytes: int

    @property
    def id(self) -> str:
        return self.sha256

    def read(self) -> bytes:
        return self.path.read_bytes()


def discover(paths: list[Path], recursive: bool = True) -> list[Path]:
    """Image files under `paths` (files given explicitly are kept whatever their suffix)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if not path.exists():
            raise ImageDiscoveryError(f"path not found: {path}")
        if path.is_file():
            found.append(path)
            continue
        pattern = "**/*" if recursive else "*"
        files = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            hint = "" if recursive else " (not searching subfolders: drop --no-recursive?)"
            raise ImageDiscoveryError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}{hint}")
        found.extend(files)
    seen: set[Path] = set()
    return [p for p in found if not (p.resolve() in seen or seen.add(p.resolve()))]


def hash_file(path: Path) -> ImageRef:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return ImageRef(path, digest.hexdigest(), size)
