from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import ImageDiscoveryError
from orchestrator.images import discover, hash_file


def test_discover_recursive_skips_hidden_and_non_images(tmp_path: Path) -> None:
    (tmp_path / "sub" / ".thumbs").mkdir(parents=True)
    for rel in ("a.JPG", "sub/b.png", "sub/.thumbs/c.jpg", "notes.txt"):
        (tmp_path / rel).write_bytes(b"x")
    assert [p.name for p in discover([tmp_path])] == ["a.JPG", "b.png"]
    assert [p.name for p in discover([tmp_path], recursive=False)] == ["a.JPG"]


def test_discover_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageDiscoveryError, match="path not found"):
        discover([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageDiscoveryError, match="no images"):
        discover([tmp_path / "empty"])


def test_same_content_same_id(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"same")
    (tmp_path / "renamed.jpg").write_bytes(b"same")
    assert hash_file(tmp_path / "a.jpg").id == hash_file(tmp_path / "renamed.jpg").id


def test_odd_names_links_and_special_files_are_all_found(tmp_path: Path) -> None:
    import os

    weird = os.fsencode(tmp_path) + b"/caf\xe9.jpg"
    with open(weird, "wb") as f:
        f.write(b"bytes")
    (tmp_path / "new\nline.jpg").write_bytes(b"x")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)  # a link loop is walked once
    found = discover([tmp_path])
    assert sorted(os.fsencode(p.name) for p in found) == sorted(
        [b"caf\xe9.jpg", b"gone.jpg", b"new\nline.jpg", b"pipe.jpg"]
    )
    refs = {os.fsencode(p.name): hash_file(p) for p in found}
    assert refs[b"caf\xe9.jpg"].error is None and refs[b"caf\xe9.jpg"].name.endswith("caf\\xe9.jpg")
    assert "dangling symbolic link" in str(refs[b"gone.jpg"].error)
    assert "not a regular file" in str(refs[b"pipe.jpg"].error), "a FIFO is never opened (it would block)"
    assert refs[b"gone.jpg"].id != refs[b"pipe.jpg"].id and len(refs[b"gone.jpg"].id) == 64
