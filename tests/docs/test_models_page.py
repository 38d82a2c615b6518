"""The models page is generated from the registry (docs/scripts/models_table.py, run by mkdocs-gen-files at
each docs build): a row and a section for every envs/*/model.toml, nothing written by hand."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from docs.scripts.models_table import MARKER, covers, models_table, render
from orchestrator.models.registry import load_registry
from orchestrator.paths import ENVS_DIR, PROJECT_ROOT

PAGE = PROJECT_ROOT / "docs" / "reference" / "models.md"
TINY = PROJECT_ROOT / "tests" / "tiny"


def _rows(table: str) -> list[str]:
    return re.findall(r"^\| \[`([^`]+)`\]\(#", table, re.M)


def test_every_registry_entry_has_a_row_and_a_section() -> None:
    registry = load_registry()
    page = render(PAGE.read_text(), registry, covers(TINY))
    assert MARKER not in page
    assert _rows(page) == list(registry)
    for name, spec in registry.items():
        assert f"\n### {name}\n" in page
        assert f"adapter `{spec.adapter}`" in page
        assert not spec.licence or f"licence: {spec.licence.splitlines()[0]}" in page
    # what the table says of a model comes from its model.toml and its tiny builder
    wd14 = next(line for line in page.splitlines() if line.startswith("| [`wd14`]"))
    assert "SmilingWolf/wd-vit-tagger-v3) @ `7f6b584d0bd3`" in wd14 and "`tests/tiny/wd14.py`" in wd14
    llava = next(line for line in page.splitlines() if line.startswith("| [`llava`]"))
    assert "Ollama: `llava`" in llava and "stand-in server" in llava


def test_a_new_model_toml_is_a_new_row(tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    shutil.copytree(ENVS_DIR, envs)
    (envs / "wd14-convnext").mkdir()
    (envs / "wd14-convnext" / "model.toml").write_text(
        (envs / "wd14" / "model.toml").read_text().replace("wd-vit-tagger-v3", "wd-convnext-tagger-v3")
    )
    table = models_table(load_registry(envs), covers(TINY))
    assert "wd14-convnext" in _rows(table)
    row = next(line for line in table.splitlines() if line.startswith("| [`wd14-convnext`]"))
    assert "SmilingWolf/wd-convnext-tagger-v3" in row and "**none**" in row  # no builder COVERS it yet


def test_a_page_without_the_marker_is_refused() -> None:
    with pytest.raises(ValueError, match="generated: models"):
        render("# Models\n", load_registry(), {})
