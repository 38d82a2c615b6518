"""Fixtures the adapter tests share.

- `tiny`: the tiny build of the module's family, test_<builder>.py -> tests/tiny/<builder>.py
  (a module sets `TINY_BUILDER = "<builder>"` where the names differ).
- `facts`: what that build's builder wrote about it (facts.json: image tokens, query tokens, ...),
  read instead of restating its numbers.
- `hub`: the build's offline Hugging Face cache (tiny/hub) as the runners' HF_HUB_CACHE, remote code
  copied to `hf_modules`, one folder per module so a loaded runner is reused across its tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def tiny(request: pytest.FixtureRequest, tiny_model: Callable[[str], Path]) -> Path:
    default = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    return tiny_model(getattr(request.module, "TINY_BUILDER", default))


@pytest.fixture(scope="module")
def facts(tiny: Path) -> dict[str, Any]:
    """tests/tiny/<builder>.py's facts.json (written with tests/tiny/_common.py write_facts)."""
    loaded: dict[str, Any] = json.loads((tiny / "facts.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def hf_modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where transformers copies a snapshot's remote code (HF_MODULES_CACHE) for this module's runners."""
    return tmp_path_factory.mktemp("hf-modules")


@pytest.fixture()
def hub(tiny: Path, hf_modules: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny snapshot as the runner's Hugging Face cache (what HF_HUB_CACHE is for a real user)."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tiny / "hub"))
    monkeypatch.setenv("HF_MODULES_CACHE", str(hf_modules))
    return tiny / "hub"
