"""Shared fixtures.

- `env_python(env)`: the python of a model venv, built on demand (uv, cached under .cache/).
- `env_script(env, code, *args)`: run python code inside a model env; it prints JSON, returned.
- `tiny_model(family)`: a tiny randomly initialised model of the real architecture, built
  offline by `tests/tiny/<family>.py` INSIDE the env that runs it, cached under .cache/tiny/
  keyed by the builder's source and the env key.
- `run_model(name, paths, weights=..., **options)`: one model through the real runner host
  and protocol (paths: image files, or context dicts for the judge); returns (load_info, cells).
  A loaded runner is reused across a module's tests (`runner_pool`); `fresh=True` for a load of its own.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from orchestrator.models import envbuild
from orchestrator.paths import PROJECT_ROOT
from orchestrator.run.processes import KEEP_ENV, RunnerProcess
from tests import tiny_models
from tests.support import request_images

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# One thread per runner: the suite runs several workers (make test: four) on a few cores, and a runner
# with a thread per core spends the others' CPU waiting busily (OpenMP spins). Warm suite, this 2-core
# machine: 569 s with a thread per core, 414 s with one (CONTRIBUTING.md "Test time").
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# The model-env pythons the tests start (tiny builds, env scripts) keep their bytecode, as runners do
# (orchestrator/run/processes.py runner_env): where PYTHONDONTWRITEBYTECODE is set (CI containers), each
# would otherwise compile torch and transformers from source again, ~7 CPU-seconds a process.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
# As the Makefile: RAM++'s `ram` (not on PyPI) from the wheel in ../shared when that is beside the checkout.
_RAM_WHEELS = "../shared/upstream/recognize-anything"
if not os.environ.get("MLTAG_FIND_LINKS") and (PROJECT_ROOT / _RAM_WHEELS).is_dir():
    os.environ["MLTAG_FIND_LINKS"] = _RAM_WHEELS

# A session needs every tiny model sooner or later: the missing ones of an env are built together, in one
# process that imports torch and transformers once (tests/tiny_models.py).
tiny_models.BUILD_SIBLINGS = True


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
    return tiny_models.build


class RunnerPool:
    """Loaded runners kept across a test module's tests, one per model, weights, load options and
    runner environment: starting a runner and loading its model is most of an adapter test's time.
    A few stay alive (least recently used goes first); all stop when the module ends."""

    KEEP = 3

    def __init__(self, env_python: Callable[[str], Path], folder: Path) -> None:
        self.env_python, self.folder = env_python, folder
        self.loaded: OrderedDict[tuple[Any, ...], tuple[RunnerProcess, dict[str, Any], Path]] = OrderedDict()

    def start(
        self,
        name: str,
        weights: Path | None,
        warmup: bool,
        load_options: dict[str, Any] | None,
        folder: Path,
        own_cache: bool = True,
    ) -> tuple[RunnerProcess, dict[str, Any], Path]:
        """A runner of registry model `name`, started and loaded; its log in `folder`, and its adapter
        cache too unless `own_cache` is False (then the one `mltag analyze` uses: .cache/adapters/<name>)."""
        from orchestrator.models.loadspec import build_load_spec
        from orchestrator.models.registry import load_registry

        spec = load_registry()[name]
        log = folder / f"{name}.log"
        runner = RunnerProcess.start(self.env_python(spec.env), spec.adapter, log, offline=True)
        try:
            runner.call("hello", timeout=120)
            load_spec = build_load_spec(
                spec, weights=weights, offline=True, device="cpu", warmup=warmup, overrides=load_options
            )
            if own_cache:
                load_spec["cache_dir"] = str(folder / "adapter-cache")
            load = runner.call("load", timeout=300, spec=load_spec)
        except BaseException:
            runner.stop()
            raise
        return runner, load, log

    def get(
        self, name: str, weights: Path | None, warmup: bool, load_options: dict[str, Any] | None
    ) -> tuple[RunnerProcess, dict[str, Any], Path]:
        """The loaded runner for these settings: reused when one is alive, else started. The key holds
        the environment a runner inherits (HF_HUB_CACHE, ...), so a test that changes it gets its own."""
        key = (
            name,
            str(weights),
            warmup,
            json.dumps(load_options, sort_keys=True, default=str),
            tuple(os.environ.get(k) for k in KEEP_ENV),
        )
        if key in self.loaded and self.loaded[key][0].alive():
            self.loaded.move_to_end(key)
            return self.loaded[key]
        self.drop(key)
        while len(self.loaded) >= self.KEEP:
            self.drop(next(iter(self.loaded)))
        self.loaded[key] = self.start(name, weights, warmup, load_options, self.folder)
        return self.loaded[key]

    def drop(self, key: tuple[Any, ...]) -> None:
        if key in self.loaded:
            self.loaded.pop(key)[0].stop()

    def close(self) -> None:
        for key in list(self.loaded):
            self.drop(key)


@pytest.fixture(scope="module")
def runner_pool(env_python: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerPool]:
    pool = RunnerPool(env_python, tmp_path_factory.mktemp("runners"))
    yield pool
    pool.close()


class RunModel:
    """`run_model(name, paths, weights=..., **options)`: one model through the real runner host and
    protocol; returns (load_info, cells). Runners are reused across the module's tests (RunnerPool);
    `fresh=True` starts and loads one for this call alone, its log and adapter cache under the test's
    tmp_path (for tests of the load itself: its notes on a cold cache, its log). `log` is the log of
    the runner that answered the last call."""

    def __init__(self, pool: RunnerPool, tmp_path: Path) -> None:
        self.pool, self.tmp_path = pool, tmp_path
        self.log = tmp_path / "no-run-yet.log"

    def __call__(
        self,
        name: str,
        paths: Sequence[Path | dict[str, Any]],
        weights: Path | None = None,
        warmup: bool = False,
        load_options: dict[str, Any] | None = None,
        fresh: bool = False,
        **infer_options: Any,
    ) -> tuple[dict, list[dict]]:
        """`paths`: image files, or for a text-only model (the judge) one context dict per item."""
        from orchestrator.models.registry import load_registry

        if fresh:
            runner, load, self.log = self.pool.start(name, weights, warmup, load_options, self.tmp_path)
        else:
            runner, load, self.log = self.pool.get(name, weights, warmup, load_options)
        try:
            out = runner.call(
                "infer",
                timeout=300,
                images=request_images(paths),
                options={**load_registry()[name].infer, **infer_options},
            )
        except BaseException:
            runner.stop()  # a runner that failed a call is not reused
            raise
        finally:
            if fresh:
                runner.stop()
        return load, out["results"]


@pytest.fixture()
def run_model(runner_pool: RunnerPool, tmp_path: Path) -> RunModel:
    """Run registry model `name` on image files through the real runner host and protocol."""
    return RunModel(runner_pool, tmp_path)
