"""The merge rules of `mltag export` (orchestrator/report/xmp.py) on XMP as pyexiv2 reads it: what is
mltag's is replaced, everything else kept. exiftool reads the real files in
tests/integration/test_export.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import ExportError
from orchestrator.paths import PROJECT_ROOT
from orchestrator.report.xmp import (
    DESCRIPTION,
    HIERARCHY,
    OUR_DESCRIPTION,
    OURS,
    SUBJECT,
    TAGS_LIST,
    PhotoKeywords,
    changes,
    merge,
    read_keywords,
    write_atomic,
)


def bag(changed: dict[str, Any], key: str) -> list[str] | None:
    """The items of a Bag written with Exiv2's array syntax (None: the field is deleted)."""
    if changed[key] is None:
        return None
    assert changed[key] == "type=Bag"
    return [changed[f"{key}[{i}]"] for i in range(1, 1 + sum(1 for k in changed if k.startswith(f"{key}[")))]


def test_new_keywords_on_a_photo_without_xmp() -> None:
    changed, kept = changes({}, PhotoKeywords(["rust", "broken window"], "wd14", 0.35))
    assert bag(changed, SUBJECT) == ["rust", "broken window"]
    assert bag(changed, HIERARCHY) == ["mltag|wd14|rust", "mltag|wd14|broken window"]
    assert changed[TAGS_LIST] == ["mltag/wd14/rust", "mltag/wd14/broken window"]
    assert changed[OURS] == ["rust", "broken window"] and changed["Xmp.mltag.threshold"] == "0.35"
    assert DESCRIPTION not in changed and not kept


def test_mltags_earlier_keywords_are_replaced_the_users_kept() -> None:
    current = {
        SUBJECT: ["family", "rust", "indoors", "door"],
        OURS: ["indoors", "door"],
        HIERARCHY: ["People|Anna", "mltag|wd14|indoors", "mltag|wd14|door"],
        TAGS_LIST: ["People/Anna", "mltag/wd14/indoors"],
        "Xmp.xmp.Rating": "4",
    }
    changed, _ = changes(current, PhotoKeywords(["rust", "sky"], "clip"))
    assert bag(changed, SUBJECT) == ["family", "rust", "sky"]
    assert changed[OURS] == ["sky"], "'rust' was the user's: never recorded as mltag's, so never removed"
    assert bag(changed, HIERARCHY) == ["People|Anna", "mltag|clip|rust", "mltag|clip|sky"]
    assert changed[TAGS_LIST] == ["People/Anna", "mltag/clip/rust", "mltag/clip/sky"]
    assert "Xmp.xmp.Rating" not in changed, "fields mltag does not own are not touched"


def test_no_hierarchy_and_no_keywords_take_mltags_entries_out() -> None:
    current = {SUBJECT: "door", OURS: "door", HIERARCHY: "mltag|wd14|door", TAGS_LIST: "mltag/wd14/door"}
    changed, _ = changes(current, PhotoKeywords([], "wd14", hierarchy=False))
    assert changed[SUBJECT] is None and changed[HIERARCHY] is None and changed[TAGS_LIST] is None
    assert changed[OURS] is None


def test_a_tags_separator_does_not_open_a_level() -> None:
    changed, _ = changes({}, PhotoKeywords(["w/o frame", "a|b"], "my|model"))
    assert bag(changed, SUBJECT) == ["w/o frame", "a|b"], "flat keywords as given"
    assert bag(changed, HIERARCHY) == ["mltag|my-model|w-o frame", "mltag|my-model|a-b"]


def test_control_characters_become_spaces() -> None:
    changed, _ = changes({}, PhotoKeywords(["a\x01b", "c\x00d", "\x02", "ok"], "wd14"))
    assert bag(changed, SUBJECT) == ["a b", "c d", "ok"]


def test_the_description_is_replaced_only_when_it_is_mltags() -> None:
    new = PhotoKeywords(["rust"], "florence2", caption="A hall.")
    changed, kept = changes({}, new)
    assert changed[DESCRIPTION] == {'lang="x-default"': "A hall."} and changed[OUR_DESCRIPTION] == "A hall."
    ours = {DESCRIPTION: {'lang="x-default"': "Old caption.", 'lang="de"': "Alt."}, OUR_DESCRIPTION: "Old caption."}
    changed, kept = changes(ours, new)
    assert changed[DESCRIPTION] == {'lang="x-default"': "A hall.", 'lang="de"': "Alt."} and not kept
    changed, kept = changes({DESCRIPTION: {'lang="x-default"': "My words."}}, new)
    assert DESCRIPTION not in changed and kept


def test_merge_round_trip_and_a_broken_sidecar() -> None:
    first = merge(None, PhotoKeywords(["rust", "a, b"], "wd14"))
    read = read_keywords(first.data)
    assert read[SUBJECT] == ["rust", "a, b"], "a comma inside a keyword stays one keyword"
    second = merge(first.data, PhotoKeywords(["rust", "a, b"], "wd14"))
    assert not second.changed and second.data == first.data, "the same export twice: the same bytes"
    with pytest.raises(ExportError, match="sidecar"):
        merge(b"not xml at all", PhotoKeywords(["rust"], "wd14"))


def test_write_atomic_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "a.jpg.xmp"
    target.write_bytes(b"old")
    target.chmod(0o640)
    write_atomic(target, b"new", like=target)
    assert target.read_bytes() == b"new" and target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["a.jpg.xmp"]


def test_raw_names_keep_the_models_spelling_unless_a_synonym_renames_them() -> None:
    from orchestrator.cli.commands.export import _raw_names
    from orchestrator.compare import Normaliser

    raw = _raw_names(Normaliser({"broken windows": "window damage"}))
    assert [raw(t) for t in ("broken_window", "Broken-Windows", " Rust ")] == ["window damage", "window damage", "Rust"]
    assert _raw_names(Normaliser())("broken_window") == "broken_window"


def test_only_mltag_export_loads_pyexiv2() -> None:
    code = "import sys, orchestrator.cli; print('pyexiv2' in sys.modules, 'orchestrator.report.xmp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True)
    assert out.stdout.split() == ["False", "False"]
