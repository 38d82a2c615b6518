"""Outputs are written atomically, and a write that fails says what to do."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from orchestrator.errors import OutputError
from orchestrator.report import output
from orchestrator.report.output import open_output


def test_a_crash_mid_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    target.write_text("the last good output")
    with pytest.raises(RuntimeError), open_output(target) as stream:
        stream.write('{"half": ')
        raise RuntimeError("the run died here")
    assert target.read_text() == "the last good output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"], "no temporary file left"


def test_a_complete_write_replaces_the_file_with_normal_permissions(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    target.write_text("old")
    with open_output(target) as stream:
        stream.write("new")
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o666 & ~output._umask()


def test_a_full_disk_is_one_error_naming_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "results.json"
    target.write_text("old")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)  # the os module output.py writes through
    full_disk = r"the disk is full; free some space or pass another --out .*mltag report"
    with pytest.raises(OutputError, match=full_disk), open_output(target) as stream:
        stream.write("new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
