"""Find image files and read them as the bytes that travel to runners.

Any name the filesystem allows is handled: names that are not valid UTF-8 (old drives, other
systems' encodings) travel as their exact bytes (`ImageRef.raw_path`) and are shown with the odd
bytes written as `\\xNN` (`display_path`). A file that cannot be read (permissions, a dangling
symbolic link, an I/O error) is still an image of the analysis: it gets an `error` and becomes a
`bad_image` cell for every model, never a silent drop or a crash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from orchestrator.archives import (
    Member,
    container_kind,
    hash_member,
    hub_dataset_files,
    hub_dataset_id,
    list_members,
    read_member,
)
from orchestrator.errors import ContainerError, ImageDiscoveryError

# Camera RAW (rawpy/LibRaw in the runners); the same list as runners/_images.py (a test keeps them equal).
RAW_SUFFIXES = frozenset({".dng", ".cr2", ".cr3", ".nef", ".arw", ".raf", ".orf", ".rw2", ".pef", ".srw"})
# A RAW's exported partner: with the same stem in the same folder they are one photo (`pair_raws`).
JPEG_SUFFIXES = frozenset({".jpg", ".jpeg", ".jfif"})
IMAGE_SUFFIXES = (
    frozenset({".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif", ".hif", ".avif", ".jxl"})
    | JPEG_SUFFIXES
    | RAW_SUFFIXES
)
RAW_PAIRS = ("jpeg", "both")  # --raw-pairs: a RAW+JPEG pair analysed from its JPEG, or both files
UNREADABLE_ID_PREFIX = b"mltag-unreadable-file:"  # ids of unreadable files: a hash of the path, not content


def display_path(path: str | os.PathLike[str]) -> str:
    """The path as text that any output can hold: undecodable bytes written as `\\xNN`."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def raw_path(path: str | os.PathLike[str]) -> bytes | None:
    """The path's exact bytes when its text form is lossy (not valid UTF-8), else None."""
    data = os.fsencode(path)
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    return None


@dataclass(frozen=True)
class ImageRef:
    path: Path
    sha256: str
    size_bytes: int
    error: str | None = None  # set: the file could not be read; `sha256` is then a hash of its path
    seen_as: tuple[Path, ...] = ()  # the camera RAW(s) of a RAW+JPEG pair analysed from this JPEG
    member: Member | None = None  # a photo inside an archive or dataset (`path` is then `archive!/name`)

    @property
    def id(self) -> str:
        return self.sha256

    @property
    def name(self) -> str:
        """The absolute path as text (see display_path)."""
        return display_path(self.path)

    def read(self) -> bytes:
        return read_member(self.member) if self.member is not None else self.path.read_bytes()


def _is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _is_photo(member: Member) -> bool:
    """An archive member is chosen as a file in a folder is (an image suffix, no hidden part); a
    dataset's rows are all photos."""
    parts = member.inner.split("/")
    if member.kind in ("parquet", "arrow"):
        return True
    return _is_image_name(parts[-1]) and not any(p.startswith(".") for p in parts)


def _walk(root: Path, recursive: bool) -> Iterator[Path]:
    """Image files under `root`, sorted per folder, hidden (dot) entries skipped. Symbolic links to
    folders are followed once (a link loop is not walked twice); links to files are kept even when
    dangling, so that they show up as cells."""
    seen: set[tuple[int, int]] = set()

    def walk(folder: Path) -> Iterator[Path]:
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen:
                return
            seen.add((st.st_dev, st.st_ino))
            entries = sorted(os.scandir(folder), key=lambda e: os.fsencode(e.name))
        except OSError:
            return  # an unreadable folder: nothing to list (its files cannot be named either)
        folders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()  # follows symbolic links
            except OSError:
                is_dir = False
            if is_dir:
                folders.append(Path(entry.path))
            elif _is_image_name(entry.name):
                yield Path(entry.path)
        if recursive:
            for sub in folders:
                yield from walk(sub)

    yield from walk(root)


Inside = dict[Path, "Member | str"]  # member path -> where to read it; a container path -> why it cannot be listed


def discover(
    paths: list[Path], recursive: bool = True, inside: Inside | None = None, offline: bool = False
) -> list[Path]:
    """Image files under `paths`, absolute (files given explicitly are kept whatever their suffix,
    and so are dangling links given explicitly). An archive or dataset given explicitly (a .zip,
    tar or .parquet file, a save_to_disk folder: orchestrator/archives.py) stands for its image
    members, each `archive!/name`, noted in `inside`
    (a container that cannot be listed stays one path, noted with the reason); archives met while
    walking a folder are not opened. `hf://datasets/ORG/NAME[@REV]`: a Hub image dataset, its parquet
    files fetched into the Hugging Face cache (offline: taken from it)."""
    found: list[Path] = []
    for raw in _hub_datasets(paths, offline) if inside is not None else paths:
        given = Path(raw).expanduser()
        path = Path(os.path.abspath(given))
        if not os.path.lexists(path):
            raise ImageDiscoveryError(f"path not found: {display_path(given)}")
        kind = container_kind(path) if inside is not None else None
        if inside is not None and kind is not None and (kind == "arrow" or path.is_file()):
            try:
                members = [m for m in list_members(path) if _is_photo(m)]
            except ContainerError as exc:
                inside[path] = str(exc)
                found.append(path)
                continue
            if not members:
                raise ImageDiscoveryError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {display_path(path)}")
            for member in members:
                inside[member.path] = member
                found.append(member.path)
            continue
        if not path.is_dir():
            found.append(path)
            continue
        files = list(_walk(path, recursive))
        if not files:
            hint = "" if recursive else " (not searching subfolders: drop --no-recursive?)"
            if any(container_kind(e.path) for e in os.scandir(path)):
                hint += " (archives and datasets in a folder are opened only when named: pass them as paths)"
            raise ImageDiscoveryError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {display_path(path)}{hint}")
        found.extend(files)
    # One path given twice (two arguments naming it) is one entry; two paths to one file (a link)
    # stay two entries: identical content runs once anyway, and every path is reported.
    return list(dict.fromkeys(found))


def _hub_datasets(paths: list[Path], offline: bool) -> list[Path]:
    """Each hub dataset id among `paths` replaced by its parquet files (ImageDiscoveryError if it cannot be had)."""
    out: list[Path] = []
    for path in paths:
        hub = hub_dataset_id(str(path))
        if hub is None:
            out.append(path)
            continue
        try:
            out.extend(hub_dataset_files(*hub, offline=offline))
        except ContainerError as exc:
            raise ImageDiscoveryError(str(exc)) from exc
    return out


def pair_raws(files: list[Path]) -> tuple[list[Path], dict[Path, list[Path]]]:
    """RAW+JPEG pairs as one photo: a camera RAW with a JPEG of the same stem (case-insensitive) in
    the same folder is left out, the JPEG the photographer exported is analysed. Returns the files
    kept (in order) and, per JPEG kept, the RAW files it stands for (its `seen_as`)."""

    def key(path: Path) -> tuple[Path, bytes]:
        return path.parent, os.fsencode(os.path.splitext(path.name)[0]).lower()

    jpegs: dict[tuple[Path, bytes], Path] = {}
    for path in files:
        if path.suffix.lower() in JPEG_SUFFIXES:
            jpegs.setdefault(key(path), path)
    kept: list[Path] = []
    pairs: dict[Path, list[Path]] = {}
    for path in files:
        jpeg = jpegs.get(key(path)) if path.suffix.lower() in RAW_SUFFIXES else None
        if jpeg is None:
            kept.append(path)
        else:
            pairs.setdefault(jpeg, []).append(path)
    return kept, pairs


def _unreadable(path: Path, exc: OSError) -> ImageRef:
    if os.path.islink(path) and not path.exists():
        why = f"dangling symbolic link: its target {display_path(os.readlink(path))} does not exist"
    elif isinstance(exc, PermissionError):
        why = "cannot read the file: permission denied (check its permissions)"
    elif isinstance(exc, FileNotFoundError):
        why = "the file vanished after it was found"
    elif isinstance(exc, IsADirectoryError):
        why = "a folder, not an image file"
    else:
        why = f"cannot read the file: {exc.strerror or exc}"
    return ImageRef(path, unreadable_id(path), 0, error=why)


def unreadable_id(path: str | os.PathLike[str]) -> str:
    """The id of a file that could not be read: a hash of its path (it has no content to hash)."""
    return hashlib.sha256(UNREADABLE_ID_PREFIX + os.fsencode(path)).hexdigest()


class HashCache(Protocol):
    """Where hashes are remembered by stat (the results store: orchestrator/store/db.py)."""

    def known_hashes(self, stats: Iterable[tuple[bytes, os.stat_result]]) -> dict[bytes, str]: ...

    def remember_hashes(self, hashed: Iterable[tuple[bytes, os.stat_result, str]]) -> None: ...


HASH_CHUNK = 256  # files stat'ed, looked up and remembered together
RACY_NS = 2_000_000_000  # a file modified this close to its hashing is not remembered (see _hash)


def _hash(path: Path) -> tuple[ImageRef, os.stat_result | None]:
    """The file's ImageRef, and the stat its content was read under when the cache may keep it:
    None when the file changed while it was read, or was modified within RACY_NS of the read (a
    write in the same mtime tick would go unseen: git's "racily clean" files)."""
    digest = hashlib.sha256()
    size = 0
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a FIFO would block the read forever
            return ImageRef(
                path, unreadable_id(path), 0, error="not a regular file (a FIFO, socket or device): nothing to read"
            ), None
        started = time.time_ns()
        with open(path, "rb") as f:
            before = os.fstat(f.fileno())
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
            after = os.fstat(f.fileno())
    except OSError as exc:
        return _unreadable(path, exc), None
    ref = ImageRef(path, digest.hexdigest(), size)
    steady = before.st_size == after.st_size == size and before.st_mtime_ns == after.st_mtime_ns
    return ref, (after if steady and after.st_mtime_ns < started - RACY_NS else None)


def hash_file(path: Path) -> ImageRef:
    """The image's id is the sha256 of its content; an unreadable file gets an ImageRef with `error`."""
    return _hash(path)[0]


def _hash_member(path: Path, member: Member) -> tuple[ImageRef, os.stat_result | None]:
    """A member's ImageRef, and the stat of its container when the cache may keep the hash (as _hash)."""
    try:
        started = time.time_ns()
        before = os.stat(member.container)
        sha, size = hash_member(member)
        after = os.stat(member.container)
    except OSError as exc:
        return ImageRef(path, unreadable_id(path), 0, error=exc.strerror or str(exc), member=member), None
    ref = ImageRef(path, sha, size, member=member)
    steady = (before.st_ino, before.st_size, before.st_mtime_ns) == (after.st_ino, after.st_size, after.st_mtime_ns)
    return ref, (after if steady and after.st_mtime_ns < started - RACY_NS else None)


def _cache_stat(path: Path, inside: Inside) -> os.stat_result | None:
    """The stat a path's hash is remembered under: its own, or its ZIP/tar's (a member has none of
    its own; the member's name is in the key). None: not cached (a parquet row's size is only known
    by reading it; a container that cannot be listed)."""
    where = inside.get(path)
    if isinstance(where, str) or (where is not None and where.size < 0):
        return None
    try:
        st = os.stat(where.container if where is not None else path)
    except OSError:
        return None  # hashed below, which says why it cannot be read
    return st if stat.S_ISREG(st.st_mode) else None


def hash_files(
    paths: list[Path],
    progress: Callable[[int, int], None] | None = None,
    seen_as: dict[Path, list[Path]] | None = None,
    cache: HashCache | None = None,
    rehash: bool = False,
    inside: Inside | None = None,
) -> list[ImageRef]:
    """hash_file for each path, reporting (done, total); `seen_as` (from `pair_raws`) is set on the
    JPEGs of RAW+JPEG pairs (the RAW itself is never read); `inside` (from `discover`): the members
    of archives and datasets. With a cache (the results store), a file whose device, inode, size and
    mtime are those it had when last hashed is not read again (as rsync's quick check); an archive
    member is keyed by its path and its archive's stat; `rehash` reads every file again (and
    refreshes the cache)."""
    inside = inside or {}
    out: list[ImageRef] = []
    for start in range(0, len(paths), HASH_CHUNK):
        chunk = paths[start : start + HASH_CHUNK]
        known: dict[bytes, str] = {}
        stats: dict[bytes, os.stat_result] = {}
        if cache is not None and not rehash:
            for path in chunk:
                st = _cache_stat(path, inside)
                if st is not None:
                    stats[os.fsencode(path)] = st
            known = cache.known_hashes(stats.items())
        fresh = []
        for path in chunk:
            key = os.fsencode(path)
            where = inside.get(path)
            if key in known:
                member = where if isinstance(where, Member) else None
                ref = ImageRef(path, known[key], member.size if member else stats[key].st_size, member=member)
            else:
                if isinstance(where, str):  # an archive that cannot be listed: a bad_image cell with the reason
                    ref, read_under = ImageRef(path, unreadable_id(path), 0, error=where), None
                elif where is not None:
                    ref, read_under = _hash_member(path, where)
                    read_under = read_under if where.size >= 0 else None
                else:
                    ref, read_under = _hash(path)
                if read_under is not None:
                    fresh.append((key, read_under, ref.sha256))
            if seen_as and path in seen_as:
                ref = dataclasses.replace(ref, seen_as=tuple(seen_as[path]))
            out.append(ref)
            if progress:
                progress(len(out), len(paths))
        if cache is not None and fresh:
            cache.remember_hashes(fresh)
    return out
