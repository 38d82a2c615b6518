from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.images import ImageDiscoveryError, discover, hash_file


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
