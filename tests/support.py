"""Helpers every test lane may use: no model env, no runner process, no browser.

Unit tests import from here, never from tests/integration/ or tests/adapters/ (an import-linter
contract in pyproject.toml says so).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.models.registry import ModelSpec
from orchestrator.paths import PROJECT_ROOT

SAMPLES = PROJECT_ROOT / "samples"  # the sample photos every lane uses
SCHEMA = json.loads((PROJECT_ROOT / "schemas" / "result.schema.json").read_text())

# A judge's input for one image: what two models said (orchestrator/run/judge.py builds it).
JUDGE_CONTEXT: dict[str, Any] = {
    "outputs": [
        {
            "model": "florence2",
            "kind": "captioner",
            "caption": "A dark corridor with peeling paint and broken windows.",
            "tags": ["corridor", "window"],
        },
        {"model": "wd14", "kind": "tagger", "caption": None, "tags": ["indoors", "hallway", "rust"]},
    ]
}


def mltag(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The `mltag` command as a user runs it (`python -m orchestrator` of this checkout), captured."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def spec(name: str = "fake", kind: str = "tagger") -> ModelSpec:
    return ModelSpec(
        name=name,
        adapter="runners.fake",
        kind=kind,
        env="none",
        hub_id="fake/model",
        revision="0" * 40,
        folder=PROJECT_ROOT / "envs" / name,
    )


def request_images(items: Sequence[Path | dict[str, Any]]) -> list[dict[str, Any]]:
    """An infer request's images: photo files (their bytes), or for a text-only model (the judge) one
    context dict per item; ids img0, img1, ... in order."""
    return [
        {"id": f"img{i}", "name": f"img{i}", "context": item}
        if isinstance(item, dict)
        else {"id": f"img{i}", "name": str(item), "data": Path(item).read_bytes()}
        for i, item in enumerate(items)
    ]
