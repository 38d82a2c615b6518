"""Photos inside archives (.zip, .tar, .tar.gz / .tgz) and image datasets (Hugging Face parquet files
and `save_to_disk` folders), read in place: never extracted, never written.

Each member (or dataset row) is a photo whose path is the container's path, `!/`, and the member's
name (`photos.zip!/ward/01.jpg`, `data.parquet!/train/123`). Listing a container keeps only each
member's name, size and where its bytes start; the bytes are read when the member is hashed and
again when its photo is sent to a runner, so memory does not grow with the archive:
- ZIP: random access through the central directory (one open ZipFile per archive, kept).
- tar: a member's bytes lie at a known offset of the (decompressed) stream; a few streams per
  archive are kept open and reused by the reader whose position is nearest below the member, so a
  pass in order decompresses a .tar.gz once.
- parquet: through pyarrow (imported only here, on the first dataset), one row group at a time
  (the last one read is kept, so rows in order cost one read per row group).
- a save_to_disk folder: its Arrow files memory-mapped through pyarrow (no copy).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import posixpath
import re
import tarfile
import threading
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from orchestrator.errors import ContainerError

SEP = "!/"
ZIP_SUFFIXES = (".zip",)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
DATASET_SUFFIXES = (".parquet",)
MAX_STREAMS = 4  # tar streams kept open per archive (models run in parallel read at their own place)
_KEPT = 8  # containers kept open at once
# What a damaged member raises while it is read (wrapped in OSError, with the container's words).
_READ_ERRORS = (
    OSError,
    EOFError,
    KeyError,
    zipfile.BadZipFile,
    zlib.error,
    tarfile.TarError,
    lzma.LZMAError,
    ValueError,
    RuntimeError,
    NotImplementedError,
)


DATASET_MARKERS = ("dataset_dict.json", "state.json")  # what `datasets`' save_to_disk writes in its folder


def container_kind(path: str | os.PathLike[str]) -> str | None:
    """'zip', 'tar' or 'parquet' by a file's name (case-insensitive), 'arrow' for a folder written by
    `datasets`' save_to_disk, else None."""
    if os.path.isdir(path):
        return "arrow" if any(os.path.isfile(os.path.join(path, m)) for m in DATASET_MARKERS) else None
    name = os.fsdecode(os.path.basename(path)).lower()
    if name.endswith(ZIP_SUFFIXES):
        return "zip"
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    if name.endswith(DATASET_SUFFIXES):
        return "parquet"
    return None


@dataclass(frozen=True)
class Member:
    """Where a photo inside a container is: enough to read its bytes again, nothing more."""

    container: Path
    kind: str  # zip | tar | parquet
    name: str  # the member's name as the container spells it (zip, tar); "split/row" (parquet)
    size: int  # its size in bytes; -1 when only reading it tells (parquet)
    offset: int = -1  # tar: where its bytes start in the decompressed stream; parquet: the row

    @property
    def path(self) -> Path:
        return member_path(self.container, self.name)

    @property
    def inner(self) -> str:
        """Its name as its path shows it (no leading ./ or /)."""
        return _clean(self.name)


def _clean(name: str) -> str:
    """A member name as it shows in paths: no leading ./ or /, no empty or . parts."""
    return posixpath.normpath("/" + name).lstrip("/")


def member_path(container: Path, name: str) -> Path:
    return Path(os.fsdecode(os.fsencode(container) + SEP.encode() + os.fsencode(_clean(name))))


def list_members(container: Path) -> list[Member]:
    """The file members of a container, in its order (a name given twice is read as its last copy, as
    unzip and tar extract it); which are photos is images.discover's choice, as in folders."""
    kind = container_kind(container)
    try:
        if kind == "zip":
            with zipfile.ZipFile(container) as zf:
                infos = {_clean(i.filename): i for i in zf.infolist() if not i.is_dir()}
                return [Member(container, "zip", i.filename, i.file_size) for i in infos.values()]
        if kind == "tar":
            found: dict[str, Member] = {}
            with tarfile.open(container, "r:*") as tf:
                try:
                    for ti in tf:  # headers only: a plain tar is seeked through, a .tar.gz decompressed once
                        if ti.isfile() and not ti.sparse:
                            found[_clean(ti.name)] = Member(container, "tar", ti.name, ti.size, ti.offset_data)
                        tf.members.clear()  # type: ignore[attr-defined]  # else every header is kept: memory grows
                except (tarfile.ReadError, EOFError, zlib.error):
                    if not found:
                        raise
                    # A truncated archive: the members named so far stay (the cut one says so when read).
            return list(found.values())
        if kind == "parquet":
            return _parquet_members(container)
        if kind == "arrow":
            return [
                Member(container, "arrow", f"{split}/{row}", -1, row)
                for split, shards in _arrow_splits(container).items()
                for row in range(sum(n for _, n in shards))
            ]
    except _READ_ERRORS as exc:
        what = {
            "zip": "a zip archive",
            "tar": "a tar archive",
            "parquet": "a parquet dataset",
            "arrow": "a save_to_disk dataset",
        }.get(kind or "", "an archive")
        raise ContainerError(
            f"cannot read {os.fsdecode(container.name)} as {what}: {getattr(exc, 'strerror', None) or exc}"
        ) from exc
    raise ContainerError(f"not an archive or dataset: {os.fsdecode(container.name)}")


# -- reading ----------------------------------------------------------------------------------------
class _Zip:
    def __init__(self, path: Path) -> None:
        self.zf = zipfile.ZipFile(path)  # reads of different members may overlap (ZipFile locks its file)

    def open(self, member: Member) -> IO[bytes]:
        return self.zf.open(member.name)

    def close(self) -> None:
        self.zf.close()


def _decompressed(path: Path) -> IO[bytes]:
    """The tar stream of a plain or compressed tar (by its first bytes, as tarfile's "r:*"): seekable,
    a compressed one by decompressing from its start when seeking back."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    if magic.startswith(b"BZh"):
        return cast(IO[bytes], bz2.open(path, "rb"))
    if magic.startswith(b"\xfd7zXZ"):
        return cast(IO[bytes], lzma.open(path, "rb"))
    return open(path, "rb")


class _Tar:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.idle: list[IO[bytes]] = []
        self.lock = threading.Lock()

    def _take(self, offset: int) -> IO[bytes]:
        """The idle stream nearest below `offset` (a compressed stream seeks back by starting over)."""
        with self.lock:
            behind = [s for s in self.idle if s.tell() <= offset]
            if behind or len(self.idle) >= MAX_STREAMS:
                best = max(behind, key=lambda s: s.tell()) if behind else self.idle[0]
                self.idle.remove(best)
                return best
        return _decompressed(self.path)

    def open(self, member: Member) -> IO[bytes]:
        stream = self._take(member.offset)
        try:
            stream.seek(member.offset)
            data = stream.read(member.size)
        except BaseException:
            stream.close()
            raise
        with self.lock:
            if len(self.idle) < MAX_STREAMS:
                self.idle.append(stream)
            else:
                stream.close()
        if len(data) != member.size:
            raise EOFError(f"the archive ends {member.size - len(data)} byte(s) into this member (truncated)")
        return io.BytesIO(data)

    def close(self) -> None:
        with self.lock:
            for stream in self.idle:
                stream.close()
            self.idle.clear()


_SPLIT = re.compile(r"^(?P<split>[A-Za-z0-9_.]+?)-\d{5}-of-\d{5}")


def _image_column(schema: Any) -> str:
    """The first column holding images as Hugging Face stores them: a struct of bytes and path."""
    import pyarrow as pa

    for field in schema:
        if pa.types.is_struct(field.type) and field.type.get_field_index("bytes") >= 0:
            return str(field.name)
    raise ContainerError("no image column: a column of {bytes, path} structs (Hugging Face's Image feature)")


def _parquet_members(path: Path) -> list[Member]:
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as pf:
        _image_column(pf.schema_arrow)
        rows = pf.metadata.num_rows
    match = _SPLIT.match(path.name)
    split = match.group("split") if match else "train"  # datasets' name for the rows of a lone file
    return [Member(path, "parquet", f"{split}/{row}", -1, row) for row in range(rows)]


class _Parquet:
    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.pf = pq.ParquetFile(path)
        self.column = _image_column(self.pf.schema_arrow)
        self.starts = [0]
        for i in range(self.pf.metadata.num_row_groups):
            self.starts.append(self.starts[-1] + self.pf.metadata.row_group(i).num_rows)
        self.lock = threading.Lock()
        self.group: tuple[int, list[Any]] = (-1, [])

    def open(self, member: Member) -> IO[bytes]:
        import bisect

        group = bisect.bisect_right(self.starts, member.offset) - 1
        with self.lock:  # the last row group read stays: rows in order read each group once
            if self.group[0] != group:
                table = self.pf.read_row_group(group, columns=[self.column])
                self.group = (group, table.column(self.column).to_pylist())
            value = self.group[1][member.offset - self.starts[group]]
        return io.BytesIO(_row_bytes(value))

    def close(self) -> None:
        self.pf.close()


def _arrow_splits(folder: Path) -> dict[str, list[tuple[Path, int]]]:
    """A save_to_disk folder's splits: each split's Arrow files (in order) and their row counts.
    A DatasetDict lists its splits in dataset_dict.json, one folder each; a lone Dataset's rows are
    `train`'s (its own `_split` when it has one), as `datasets` names a lone file's rows."""
    import json

    import pyarrow as pa

    if (folder / "dataset_dict.json").is_file():
        splits = {str(s): folder / str(s) for s in json.loads((folder / "dataset_dict.json").read_text())["splits"]}
    else:
        state = json.loads((folder / "state.json").read_text())
        splits = {str(state.get("_split") or "train"): folder}
    out: dict[str, list[tuple[Path, int]]] = {}
    for split, where in splits.items():
        state = json.loads((where / "state.json").read_text())
        shards = []
        for entry in state["_data_files"]:
            path = where / entry["filename"]
            with pa.memory_map(str(path)) as source:  # mapped, not read: counting rows touches the batch headers
                reader = pa.ipc.open_stream(source)
                _image_column(reader.schema)
                shards.append((path, sum(batch.num_rows for batch in reader)))
        out[split] = shards
    return out


class _Arrow:
    """A save_to_disk folder: its Arrow files memory-mapped (the pages a row needs are read by the
    system, and given back under memory pressure: nothing grows in this process)."""

    def __init__(self, path: Path) -> None:
        self.splits = _arrow_splits(path)
        self.tables: dict[Path, Any] = {}
        self.lock = threading.Lock()

    def _table(self, path: Path) -> Any:
        import pyarrow as pa

        with self.lock:
            if path not in self.tables:
                self.tables[path] = pa.ipc.open_stream(pa.memory_map(str(path))).read_all()  # zero-copy
            return self.tables[path]

    def open(self, member: Member) -> IO[bytes]:
        split = member.name.rsplit("/", 1)[0]
        row = member.offset
        for path, rows in self.splits[split]:
            if row < rows:
                table = self._table(path)
                value = table.column(_image_column(table.schema)).slice(row, 1).to_pylist()[0]
                return io.BytesIO(_row_bytes(value))
            row -= rows
        raise ValueError(f"no row {member.offset} in split {split} (the dataset changed since it was listed)")

    def close(self) -> None:
        with self.lock:
            self.tables.clear()


def _row_bytes(value: Any) -> bytes:
    data = value.get("bytes") if value else None
    if data is None:
        named = value.get("path") if value else None
        why = f" (it names a file, {named}, not read)" if named else ""
        raise ValueError(f"this row holds no image bytes{why}")
    return bytes(data)


_open: dict[tuple[Path, int, int, int], Any] = {}
_open_lock = threading.Lock()


def _reader(container: Path, kind: str) -> Any:
    """The container's reader, kept while its file is unchanged (dev, inode... as a new key otherwise)."""
    st = os.stat(container)
    key = (container, st.st_ino, st.st_size, st.st_mtime_ns)
    with _open_lock:
        reader = _open.get(key)
        if reader is None:
            while len(_open) >= _KEPT:
                _open.pop(next(iter(_open))).close()
            reader = _open[key] = {"zip": _Zip, "tar": _Tar, "parquet": _Parquet, "arrow": _Arrow}[kind](container)
        return reader


def _chunks(member: Member) -> Iterator[bytes]:
    try:
        with _reader(member.container, member.kind).open(member) as f:
            while chunk := f.read(1 << 20):
                yield chunk
    except _READ_ERRORS as exc:
        if isinstance(exc, OSError) and not isinstance(exc, ContainerError) and exc.strerror:
            raise
        raise ContainerError(
            f"cannot read {_clean(member.name)} in {os.fsdecode(member.container.name)}: {exc}"
        ) from exc


def read_member(member: Member) -> bytes:
    """The member's bytes (OSError, with the reason, when the member or its container is damaged)."""
    return b"".join(_chunks(member))


def hash_member(member: Member) -> tuple[str, int]:
    """(sha256, size) of the member's bytes, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    for chunk in _chunks(member):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def find_member(path: str | os.PathLike[str]) -> Member | None:
    """The member a stored path such as `photos.zip!/ward/01.jpg` names (the report's and `mltag
    serve`'s thumbnails), or None when the path is not inside a container."""
    text = os.fsencode(path)
    at = text.find(SEP.encode())
    while at >= 0:
        container = Path(os.fsdecode(text[:at]))
        if container_kind(container):
            try:
                return _members_of(container).get(os.fsdecode(text[at + len(SEP) :]))
            except ContainerError:
                return None
        at = text.find(SEP.encode(), at + 1)
    return None


_listed: dict[tuple[Path, int, int], dict[str, Member]] = {}


def _members_of(container: Path) -> dict[str, Member]:
    """list_members by name as paths show it, kept for the last few containers (thumbnails ask for
    one member at a time)."""
    st = os.stat(container)
    key = (container, st.st_size, st.st_mtime_ns)
    with _open_lock:
        if key in _listed:
            return _listed[key]
    members = {_clean(m.name): m for m in list_members(container)}
    with _open_lock:
        while len(_listed) >= _KEPT:
            _listed.pop(next(iter(_listed)))
        _listed[key] = members
    return members


# -- image datasets on the Hugging Face Hub ------------------------------------------------------------
HUB_PREFIX = "hf://datasets/"


def hub_dataset_id(given: str) -> tuple[str, str | None] | None:
    """(repo id, revision or None) of `hf://datasets/ORG/NAME[@REV]` (as typed, or as pathlib folds
    its `//`), else None."""
    text = given.replace("hf:/datasets/", HUB_PREFIX, 1) if given.startswith("hf:/datasets/") else given
    if not text.startswith(HUB_PREFIX):
        return None
    repo, _, revision = text[len(HUB_PREFIX) :].strip("/").partition("@")
    return repo, revision or None


def hub_dataset_files(repo: str, revision: str | None, offline: bool) -> list[Path]:
    """The parquet files of a Hub image dataset, downloaded into the Hugging Face cache (never beside
    the photos) or, offline, taken from it; each is then read like a local dataset file."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        folder = Path(
            snapshot_download(
                repo,
                repo_type="dataset",
                revision=revision,
                allow_patterns=["*.parquet", "**/*.parquet"],
                local_files_only=offline,
            )
        )
    except (LocalEntryNotFoundError, RepositoryNotFoundError, HFValidationError, OSError) as exc:
        why = "it is not in the Hugging Face cache and mltag is offline" if offline else f"{type(exc).__name__}: {exc}"
        raise ContainerError(
            f"cannot get the dataset {repo}{'@' + revision if revision else ''} from the Hub: "
            f"{why}; `hf download {repo} --repo-type dataset` and name its parquet files, "
            "or check the id"
        ) from exc
    files = sorted(folder.rglob("*.parquet"))
    if not files:
        raise ContainerError(
            f"the dataset {repo} has no parquet files (at {folder}): mltag reads image datasets stored as parquet"
        )
    return files
