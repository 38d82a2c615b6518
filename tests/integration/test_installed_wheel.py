"""mltag as a user installs it (`uv tool install .`, `pipx install .`): the wheel in a fresh venv, run from
a folder outside the checkout. It lists the registry, builds the wd14 env in the user cache folder, and
analyses a photo with a tiny wd14, its runner importing the INSTALLED runners/ (never the checkout's).

The wheel: $MLTAG_WHEEL_DIST (a folder holding the one .whl .ci/wheel-check built and twine-checked),
else built here with `python -m build` (the sdist, then the wheel from it: no build/ left in the
checkout). uv's cache is this checkout's (UV_CACHE_DIR, or .cache/uv): nothing is downloaded again.
About 40 s with a warm uv cache and a built tiny wd14."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from orchestrator import __version__
from orchestrator.models.envbuild import pip_find_links
from orchestrator.models.registry import load_registry
from orchestrator.paths import PROJECT_ROOT, uv_cache_dir

pytestmark = [pytest.mark.wheel, pytest.mark.adapter]
# runners.host, once imported, keeps stdout for the protocol: its file is found, not imported
PRINT_RUNNER_CODE = (
    "import importlib.util, schemas, runners.adapters.wd14; "
    "print(importlib.util.find_spec('runners.host').origin, schemas.__file__, runners.adapters.wd14.__file__)"
)


def _uv() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("MLTAG_WHEEL_DIST")
    if given:
        found = sorted(Path(given).glob("mltag-*.whl"))
        assert len(found) == 1, f"MLTAG_WHEEL_DIST={given} should hold one mltag wheel, holds {found}"
        return found[0]
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(PROJECT_ROOT)],  # the wheel from the sdist
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (built,) = out.glob("mltag-*.whl")
    return built


@pytest.fixture(scope="module")
def user(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A folder outside the checkout holding a fresh venv with the wheel installed (and nothing else)."""
    home = tmp_path_factory.mktemp("user")
    assert not home.is_relative_to(PROJECT_ROOT)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["UV_CACHE_DIR"] = str(uv_cache_dir())
    subprocess.run([_uv(), "venv", "-q", "--python", sys.executable, str(home / "venv")], check=True, env=env)
    links = [arg for link in pip_find_links() for arg in ("--find-links", link)]
    proc = subprocess.run(
        [_uv(), "pip", "install", "-q", "--python", str(home / "venv" / "bin" / "python"), *links, str(wheel)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return home


def _installed(user: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The installed `mltag` as a user runs it: from their own folder, with no trace of the checkout
    (no PYTHONPATH, no MLTAG_CACHE_DIR): its envs go to the user cache folder, here MLTAG_CACHE."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "MLTAG_CACHE_DIR")}
    env.update(
        MLTAG_CACHE=str(user / "cache"),
        MLTAG_HOME=str(user / "data"),
        UV_CACHE_DIR=str(uv_cache_dir()),  # this checkout's: nothing downloaded twice
        HF_HOME=str(user / "hf"),
        HF_HUB_OFFLINE="1",
    )
    return subprocess.run(
        [str(user / "venv" / "bin" / "mltag"), *args],
        capture_output=True,
        text=True,
        cwd=user,
        env=env,
        timeout=timeout,
    )


def test_version_paths_and_registry(user: Path, wheel: Path) -> None:
    proc = _installed(user, "--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"mltag {__version__}"
    assert f"mltag-{__version__}-" in wheel.name

    proc = _installed(user, "paths", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    site = Path(doc["root"])
    assert doc["layout"] == "install" and doc["version"] == __version__
    assert site.is_relative_to(user / "venv") and site.name == "site-packages"
    where = {name: Path(entry["path"]) for name, entry in doc["paths"].items()}
    assert where["registry"] == site / "envs" and where["locks"] == site / "envs" / "requirements"
    for name in ("envs", "logs", "adapter caches", "thumbnails", "browse indexes", "runner code"):
        assert where[name].is_relative_to(user / "cache"), (name, where[name])
    assert where["uv cache"] == uv_cache_dir()
    assert where["results store"] == user / "data" / "results.sqlite"

    proc = _installed(user, "models")
    assert proc.returncode == 0, proc.stderr
    for name in load_registry():  # every model of the checkout's registry, from the installed copy
        assert name in proc.stdout, f"{name} is not listed by the installed mltag"


def test_builds_an_env_and_analyses_a_photo(user: Path, tiny_model: Callable[[str], Path]) -> None:
    proc = _installed(user, "health", "wd14")  # no env yet: the fix is a command an install has (no make)
    assert proc.returncode == 1 and "FAIL env: env 'onnx' is missing: not built" in proc.stdout, proc.stdout
    assert "fix: mltag setup-envs --models wd14" in proc.stdout

    proc = _installed(user, "setup-envs", "--models", "wd14")
    assert proc.returncode == 0, proc.stderr
    env = user / "cache" / "venvs" / "onnx"
    assert (env / ".mltag-env.json").is_file(), proc.stderr

    # The env's runner code is the install's: runners/ and schemas/ resolve into the wheel's site folder.
    where = subprocess.run(
        [str(env / "bin" / "python"), "-c", PRINT_RUNNER_CODE],
        capture_output=True,
        text=True,
        cwd=user,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert where.returncode == 0, where.stderr
    files = [Path(f).resolve() for f in where.stdout.split()]
    assert len(files) == 3, where.stdout
    for file in files:
        assert file.is_relative_to((user / "venv").resolve()) and not file.is_relative_to(PROJECT_ROOT), file

    photos = user / "photos"
    photos.mkdir()
    shutil.copy(PROJECT_ROOT / "samples" / "chelsea.png", photos / "chelsea.png")
    weights = f"wd14={tiny_model('wd14')}"
    proc = _installed(user, "analyze", str(photos), "--models", "wd14", "--weights", weights, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    schema = next((user / "venv").glob("lib/python*/site-packages/schemas/result.schema.json"))
    jsonschema.validate(doc, json.loads(schema.read_text()))
    cell = doc["images"][0]["results"]["wd14"]
    assert cell["status"] == "ok" and cell["tags"], cell
    assert sorted(p.name for p in photos.iterdir()) == ["chelsea.png"]  # nothing written beside the photo
    assert (user / "data" / "results.sqlite").is_file()  # the store, in the user data folder
    assert any((user / "cache" / "logs").rglob("wd14.log"))  # the runner's log, in the user cache folder

    # The same tags as this checkout's mltag on the same tiny weights: the installed runner is the same code.
    mine = subprocess.run(
        [sys.executable, "-m", "orchestrator", "analyze", str(photos), "--models", "wd14"]
        + ["--weights", weights, "--format", "json", "--no-store"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=600,
    )
    assert mine.returncode == 0, mine.stderr
    assert json.loads(mine.stdout)["images"][0]["results"]["wd14"]["tags"] == cell["tags"]
