"""mkdocs-gen-files script (mkdocs.yml): fills docs/reference/models.md's generated part from the registry, so
the models table cannot drift from envs/*/model.toml. The CLI reference is mkdocs-click's (docs/reference/cli.md)."""

from __future__ import annotations

from pathlib import Path

import mkdocs_gen_files

from docs.scripts.models_table import covers, render
from orchestrator.models.registry import load_registry

ROOT = Path(__file__).resolve().parents[2]
PAGE = "reference/models.md"

page = (ROOT / "docs" / PAGE).read_text()
with mkdocs_gen_files.open(PAGE, "w") as out:
    out.write(render(page, load_registry(ROOT / "envs"), covers(ROOT / "tests" / "tiny")))
