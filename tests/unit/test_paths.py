"""Where mltag lives: a checkout or an install (orchestrator/paths.py), `mltag --version`, `mltag paths`."""

from __future__ import annotations

import json
from importlib.metadata import version as dist_version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator import __version__, paths
from orchestrator.cli import app
from orchestrator.errors import EnvBuildError, RegistryError
from orchestrator.models import envbuild
from orchestrator.models.registry import load_registry


def _project(root: Path, name: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(f'[project]\nname = "{name}"\n')
    return root


def test_a_checkout_is_a_pyproject_naming_mltag(tmp_path: Path) -> None:
    assert paths.from_checkout()  # these tests run from the checkout
    assert paths.from_checkout(_project(tmp_path / "clone", "mltag"))  # no .git needed (an unpacked archive)
    assert not paths.from_checkout(_project(tmp_path / "site", "someone-else"))  # a stray file in site-packages
    assert not paths.from_checkout(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "pyproject.toml").write_text("[project\n")
    assert not paths.from_checkout(tmp_path / "broken")


@pytest.fixture()
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """mltag as an install sees itself: PROJECT_ROOT a site folder holding runners/ and schemas/."""
    site = tmp_path / "site-packages"
    for package in ("runners", "schemas"):
        (site / package).mkdir(parents=True)
        (site / package / "__init__.py").write_text("")
    (site / "runners" / "host.py").write_text("")
    monkeypatch.setattr(paths, "PROJECT_ROOT", site)
    monkeypatch.setattr(paths, "from_checkout", lambda root=site: False)
    monkeypatch.delenv("MLTAG_CACHE_DIR", raising=False)
    monkeypatch.delenv("UV_CACHE_DIR", raising=False)
    return site


def test_a_checkout_keeps_its_envs_in_dot_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLTAG_CACHE_DIR", raising=False)
    monkeypatch.delenv("UV_CACHE_DIR", raising=False)
    assert paths.cache_root() == (paths.PROJECT_ROOT / ".cache").resolve()
    assert paths.venvs_dir() == paths.cache_root() / "venvs" and paths.uv_cache_dir() == paths.cache_root() / "uv"
    assert paths.runner_code_dir() == paths.link_runner_code() == paths.PROJECT_ROOT
    monkeypatch.setenv("MLTAG_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert paths.logs_dir() == tmp_path / "elsewhere" / "logs"


def test_an_install_writes_to_the_user_cache_folder(
    installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLTAG_CACHE", str(tmp_path / "user-cache"))
    user_cache = (tmp_path / "user-cache").resolve()
    assert paths.cache_root() == user_cache  # never the site folder
    assert paths.venvs_dir() == user_cache / "venvs" and paths.logs_dir() == user_cache / "logs"
    assert (
        paths.uv_cache_dir() == user_cache / "uv" and paths.thumbnails_dir() == tmp_path / "user-cache" / "thumbnails"
    )
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv"))
    monkeypatch.setenv("MLTAG_CACHE_DIR", str(tmp_path / "envs-here"))
    assert paths.uv_cache_dir() == tmp_path / "uv" and paths.venvs_dir() == tmp_path / "envs-here" / "venvs"
    assert paths.thumbnails_dir() == tmp_path / "user-cache" / "thumbnails"  # MLTAG_CACHE_DIR moves the envs only


def test_an_installs_model_envs_see_its_runners_and_schemas_only(
    installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLTAG_CACHE", str(tmp_path / "user-cache"))
    code = paths.link_runner_code()
    assert code == paths.runner_code_dir() and code.is_relative_to((tmp_path / "user-cache").resolve())
    assert sorted(p.name for p in code.iterdir()) == ["runners", "schemas"]
    assert (code / "runners").resolve() == installed / "runners" and (
        code / "schemas"
    ).resolve() == installed / "schemas"
    (code / "runners").unlink()
    (code / "runners").symlink_to(tmp_path, target_is_directory=True)  # an older install's link: replaced
    assert paths.link_runner_code() == code and (code / "runners").resolve() == installed / "runners"


def test_an_env_whose_runner_code_link_is_gone_is_stale(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    req = tmp_path / "requirements"
    req.mkdir()
    (req / "demo.in").write_text("numpy==2.4.6\n")
    (req / "demo.txt").write_text("numpy==2.4.6\n")
    monkeypatch.setattr(envbuild, "REQUIREMENTS_DIR", req)
    monkeypatch.setenv("MLTAG_CACHE_DIR", str(tmp_path / "cache"))
    env = envbuild.env_paths("demo")
    env.python.parent.mkdir(parents=True)
    env.python.touch()
    marker = {"key": envbuild.env_key(env), "project_root": str(paths.PROJECT_ROOT)}
    env.marker.write_text(json.dumps({**marker, "code": str(paths.PROJECT_ROOT)}))
    assert envbuild.env_state("demo") == ("ready", "")
    env.marker.write_text(json.dumps({**marker, "code": str(tmp_path / "gone")}))
    state, why = envbuild.env_state("demo")
    assert state == "stale" and "runners/" in why


def test_an_install_refuses_to_rewrite_the_locks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envbuild, "from_checkout", lambda: False)
    with pytest.raises(EnvBuildError, match="runs from a checkout") as exc:
        envbuild.lock_env("onnx", log=lambda s: None)
    assert exc.value.exit_code == 2


def test_the_fix_for_a_missing_env_is_a_command_the_layout_has(monkeypatch: pytest.MonkeyPatch) -> None:
    assert envbuild.setup_fix("wd14") == "make setup-envs MODELS=wd14"
    monkeypatch.setattr(envbuild, "from_checkout", lambda: False)
    assert envbuild.setup_fix("wd14") == "mltag setup-envs --models wd14"


def test_no_model_toml_at_all_is_an_error_not_an_empty_registry(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="holds no <model>/model.toml"):
        load_registry(tmp_path)


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"mltag {__version__}\n"
    assert paths.version() == __version__
    assert dist_version("mltag") == __version__  # the dev install's metadata: pyproject.toml reads __version__


def test_paths_json_names_every_folder_and_what_placed_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLTAG_CACHE_DIR", raising=False)
    monkeypatch.delenv("UV_CACHE_DIR", raising=False)
    result = CliRunner().invoke(app, ["paths", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["version"] == __version__ and doc["layout"] == "checkout" and doc["root"] == str(paths.PROJECT_ROOT)
    where = {name: (Path(e["path"]), e["set_by"]) for name, e in doc["paths"].items()}
    assert where["envs"] == (paths.PROJECT_ROOT.resolve() / ".cache" / "venvs", "default (the checkout's .cache)")
    assert where["registry"][0] == paths.ENVS_DIR and where["locks"][0] == paths.REQUIREMENTS_DIR
    assert where["results store"] == (tmp_path / "mltag-home" / "results.sqlite", "MLTAG_HOME")  # conftest's
    assert where["thumbnails"] == (tmp_path / "mltag-cache" / "thumbnails", "MLTAG_CACHE")
    assert set(where) >= {"uv cache", "logs", "browse indexes", "runner code", "adapter caches"}

    monkeypatch.setenv("MLTAG_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv"))
    doc = json.loads(CliRunner().invoke(app, ["paths", "--json"]).stdout)
    assert doc["paths"]["logs"] == {
        "name": "logs",
        "path": str(tmp_path / "c" / "logs"),
        "set_by": "MLTAG_CACHE_DIR",
        "what": "one log per run and model",
    }
    assert doc["paths"]["uv cache"]["path"] == str(tmp_path / "uv")
    assert doc["paths"]["uv cache"]["set_by"] == "UV_CACHE_DIR"


def test_paths_prints_a_table() -> None:
    result = CliRunner().invoke(app, ["paths"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"mltag {__version__}, from the checkout at {paths.PROJECT_ROOT}")
    for name in ("registry", "envs", "uv cache", "logs", "results store", "thumbnails"):
        assert f"\n{name} " in result.stdout
