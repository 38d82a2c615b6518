"""Env keys and states, without building anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import envbuild


@pytest.fixture()
def fake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> envbuild.EnvPaths:
    req = tmp_path / "requirements"
    req.mkdir()
    (req / "demo.in").write_text("torch==2.13.0\nnumpy==2.4.6\n")
    (req / "demo.txt").write_text("numpy==2.4.6\n")
    monkeypatch.setattr(envbuild, "REQUIREMENTS_DIR", req)
    monkeypatch.setenv("MLTAG_CACHE_DIR", str(tmp_path / "cache"))
    return envbuild.env_paths("demo")


def test_key_changes_with_the_lock(fake_env: envbuild.EnvPaths) -> None:
    before = envbuild.env_key(fake_env)
    assert envbuild.env_key(fake_env) == before
    fake_env.lock.write_text("numpy==2.4.5\n")
    assert envbuild.env_key(fake_env) != before


def test_states_missing_half_built_stale_ready(fake_env: envbuild.EnvPaths) -> None:
    assert envbuild.env_state("demo") == ("missing", "not built")
    fake_env.python.parent.mkdir(parents=True)
    assert envbuild.env_state("demo")[1].startswith("half-built")
    fake_env.python.touch()
    fake_env.marker.write_text(json.dumps({"key": "old", "project_root": str(envbuild.PROJECT_ROOT)}))
    state, why = envbuild.env_state("demo")
    assert state == "stale" and "pins" in why
    fake_env.marker.write_text(json.dumps({"key": envbuild.env_key(fake_env),
                                           "project_root": str(envbuild.PROJECT_ROOT)}))
    assert envbuild.env_state("demo") == ("ready", "")


def test_failed_build_leaves_nothing(fake_env: envbuild.EnvPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(paths: envbuild.EnvPaths, log: object) -> None:
        paths.python.parent.mkdir(parents=True)
        raise envbuild.EnvBuildError("simulated uv failure")

    monkeypatch.setattr(envbuild, "_build", broken)
    with pytest.raises(envbuild.EnvBuildError):
        envbuild.build_env("demo", log=lambda s: None)
    assert not fake_env.venv.exists()


def test_pip_find_links_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UV_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_FIND_LINKS", "/a /b")
    assert envbuild.pip_find_links() == ["/a", "/b"]
