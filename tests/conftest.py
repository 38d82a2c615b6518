"""Shared fixtures.

- `env_python(env)`: the python of a model venv, built on demand (uv, cached under .cache/).
- `env_script(env, code, *args)`: run python code inside a model env; it prints JSON, returned.
- `tiny_model(family)`: a tiny randomly initialised model of the real architecture, built
  offline by `tests/tiny/<family>.py` INSIDE the env that runs it, cached under .cache/tiny/
  keyed by the builder's source and the env key.
- `run_model(name, paths, weights=..., **options)`: one model through the real runner host
  and protocol (paths: image files, or context dicts for the judge); returns (load_info, cells).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from orchestrator.models import envbuild
from orchestrator.paths import PROJECT_ROOT

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# As the Makefile: RAM++'s `ram` (not on PyPI) from the wheel in ../shared when that is beside the checkout.
_RAM_WHEELS = "../shared/upstream/recognize-anything"
if not os.environ.get("MLTAG_FIND_LINKS") and (PROJECT_ROOT / _RAM_WHEELS).is_dir():
    os.environ["MLTAG_FIND_LINKS"] = _RAM_WHEELS


@pytest.fixture(autouse=True)
def mltag_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own default results store (MLTAG_HOME) and thumbnail / browse cache (MLTAG_CACHE),
    never the user's data or cache folder."""
    home = tmp_path / "mltag-home"
    monkeypatch.setenv("MLTAG_HOME", str(home))
    monkeypatch.setenv("MLTAG_CACHE", str(tmp_path / "mltag-cache"))
    return home


@pytest.fixture(scope="session")
def env_python() -> Callable[[str], Path]:
    built: dict[str, Path] = {}

    def get(env: str) -> Path:
        if env not in built:
            built[env] = envbuild.build_env(env, log=lambda s: None).python
        return built[env]

    return get


@pytest.fixture(scope="session")
def env_script(env_python: Callable[[str], Path]) -> Callable[..., Any]:
    """Run python `code` (with args) inside model env `env`, this checkout on its path; the code
    prints one JSON document, which is returned. For checks that need the env's own packages."""
    import json
    import subprocess

    from orchestrator.paths import PROJECT_ROOT

    def run(env: str, code: str, *args: str, timeout: float = 180) -> Any:
        proc = subprocess.run(
            [str(env_python(env)), "-c", code, *args],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
            timeout=timeout,
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    return run


@pytest.fixture(scope="session")
def tiny_model() -> Callable[[str], Path]:
    from tests.tiny_models import build

    return build


@pytest.fixture()
def run_model(env_python: Callable[[str], Path], tmp_path: Path) -> Callable[..., tuple[dict, list[dict]]]:
    """Run registry model `name` on image files through the real runner host and protocol."""
    from orchestrator.models.loadspec import build_load_spec
    from orchestrator.models.registry import load_registry
    from orchestrator.run.processes import RunnerProcess

    def run(
        name: str,
        paths: Sequence[Path | dict[str, Any]],
        weights: Path | None = None,
        warmup: bool = False,
        load_options: dict[str, Any] | None = None,
        **infer_options: Any,
    ) -> tuple[dict, list[dict]]:
        """`paths`: image files, or for a text-only model (the judge) one context dict per item."""
        spec = load_registry()[name]
        runner = RunnerProcess.start(env_python(spec.env), spec.adapter, tmp_path / f"{name}.log", offline=True)
        try:
            runner.call("hello", timeout=120)
            load_spec = build_load_spec(
                spec, weights=weights, offline=True, device="cpu", warmup=warmup, overrides=load_options
            )
            load_spec["cache_dir"] = str(tmp_path / "adapter-cache")
            load = runner.call("load", timeout=300, spec=load_spec)
            images = [
                {"id": f"img{i}", "name": f"img{i}", "context": p}
                if isinstance(p, dict)
                else {"id": f"img{i}", "name": str(p), "data": Path(p).read_bytes()}
                for i, p in enumerate(paths)
            ]
            out = runner.call("infer", timeout=300, images=images, options={**spec.infer, **infer_options})
            return load, out["results"]
        finally:
            runner.stop()

    return run
