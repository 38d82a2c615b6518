"""The store's stat cache: a file whose device, inode, size and mtime are unchanged is not read again.

Reads are counted by wrapping the `open` that orchestrator/images.py hashes with; the CLI's own
test is tests/integration/test_store_cli.py (test_a_rerun_reads_only_changed_files)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator import images
from orchestrator.images import hash_file, hash_files
from orchestrator.store import ResultStore

OLD_NS = 1_600_000_000 * 10**9  # 2020: far from "now" (a file modified just now is not cached: racy)


@pytest.fixture()
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the files orchestrator.images opens to hash."""
    opened: list[str] = []

    def counting_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(os.fsdecode(path).rsplit("/", 1)[-1])
        return open(path, *args, **kwargs)

    monkeypatch.setattr(images, "open", counting_open, raising=False)
    yield opened


def _files(folder: Path, names: list[bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, name in enumerate(names):
        path = Path(os.fsdecode(os.path.join(os.fsencode(folder), name)))
        path.write_bytes(b"photo %d " % i + name)
        os.utime(path, ns=(OLD_NS, OLD_NS + i))
        paths.append(path)
    return paths


def _rewrite_keeping_stat(path: Path, data: bytes) -> None:
    """New bytes, same size and mtime (what rsync's quick check cannot see either)."""
    st = path.stat()
    assert len(data) == st.st_size
    with open(path, "r+b") as f:  # in place: same inode
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_unchanged_files_are_not_read_again(tmp_path: Path, reads: list[str]) -> None:
    db = ResultStore(tmp_path / "store.sqlite")
    paths = _files(tmp_path / "photos", [b"a.jpg", b"caf\xe9 latin-1.jpg", b"c.jpg"])
    first = hash_files(paths, cache=db)
    assert len(reads) == 3 and [r.sha256 for r in first] == [hash_file(p).sha256 for p in paths]
    reads.clear()

    again = hash_files(paths, cache=db)
    assert reads == [], "nothing read: every stat unchanged (a non-UTF-8 name included)"
    assert again == first

    _rewrite_keeping_stat(paths[1], b"X" * paths[1].stat().st_size)
    assert hash_files(paths, cache=db) == first, "same size and mtime: the cache does not see the new bytes"
    assert reads == []
    rehashed = hash_files(paths, cache=db, rehash=True)
    assert len(reads) == 3, "--rehash reads every file"
    assert rehashed[1].sha256 == hash_file(paths[1]).sha256 != first[1].sha256
    reads.clear()
    assert hash_files(paths, cache=db) == rehashed and reads == [], "--rehash refreshed the cache"


def test_a_changed_mtime_size_or_inode_is_hashed_again(tmp_path: Path, reads: list[str]) -> None:
    db = ResultStore(tmp_path / "store.sqlite")
    a, b, c, d = _files(tmp_path, [b"a.jpg", b"b.jpg", b"c.jpg", b"d.jpg"])
    first = hash_files([a, b, c, d], cache=db)
    reads.clear()
    os.utime(a, ns=(OLD_NS, OLD_NS + 10**9))  # touched: mtime changed, content not
    b.write_bytes(b"longer content now")  # size changed
    os.utime(b, ns=(OLD_NS, OLD_NS + 1))
    copy = c.with_name("c.tmp")  # replaced by a copy: same size and mtime, new inode
    shutil.copy2(c, copy)
    copy.write_bytes(b"Z" * c.stat().st_size)
    os.utime(copy, ns=(OLD_NS, OLD_NS + 2))
    os.replace(copy, c)
    out = hash_files([a, b, c, d], cache=db)
    assert sorted(reads) == ["a.jpg", "b.jpg", "c.jpg"], "d is unchanged: not read"
    assert out[0] == first[0], "touched only: hashed again, same content"
    assert out[1].sha256 == hash_file(b).sha256 != first[1].sha256
    assert out[2].sha256 == hash_file(c).sha256 != first[2].sha256
    assert out[3] == first[3]


def test_files_modified_just_now_or_unreadable_are_not_cached(tmp_path: Path, reads: list[str]) -> None:
    db = ResultStore(tmp_path / "store.sqlite")
    fresh = tmp_path / "fresh.jpg"
    fresh.write_bytes(b"written a moment ago")  # mtime now: a write in the same tick would go unseen
    missing = tmp_path / "gone.jpg"
    hash_files([fresh, missing], cache=db)
    reads.clear()
    out = hash_files([fresh, missing], cache=db)
    assert reads == ["fresh.jpg"], "a racily fresh file is read every time until it is older"
    assert out[1].error == "the file vanished after it was found", "no stat, no cache: said as before"
