"""Env keys and states, without building anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.errors import EnvBuildError
from orchestrator.models import envbuild
from orchestrator.paths import PROJECT_ROOT


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
    fake_env.marker.write_text(json.dumps({"key": "old", "project_root": str(PROJECT_ROOT)}))
    state, why = envbuild.env_state("demo")
    assert state == "stale" and "pins" in why
    fake_env.marker.write_text(json.dumps({"key": envbuild.env_key(fake_env), "project_root": str(PROJECT_ROOT)}))
    assert envbuild.env_state("demo") == ("ready", "")


def test_failed_build_leaves_nothing(fake_env: envbuild.EnvPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(paths: envbuild.EnvPaths, log: object) -> None:
        paths.python.parent.mkdir(parents=True)
        raise EnvBuildError("simulated uv failure")

    monkeypatch.setattr(envbuild, "_build", broken)
    with pytest.raises(EnvBuildError):
        envbuild.build_env("demo", log=lambda s: None)
    assert not fake_env.venv.exists()


def test_pip_find_links_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UV_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_FIND_LINKS", "/a /b")
    assert envbuild.pip_find_links() == ["/a", "/b"]


def test_direct_references_and_local_wheel_stand_ins(
    fake_env: envbuild.EnvPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = "ram @ git+https://github.com/xinyu1205/recognize-anything@" + "7" * 40
    fake_env.lock.write_text(f"numpy==2.4.6\n{ref}\n    # via -r demo.in\n")
    assert envbuild.direct_references(fake_env.lock.read_text()) == {"ram": ref}
    monkeypatch.delenv("MLTAG_FIND_LINKS", raising=False)
    without = envbuild.env_key(fake_env)
    assert envbuild.local_substitutes(["ram"]) == {}
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = wheels / "ram-0.0.1-py3-none-any.whl"
    wheel.write_bytes(b"wheel v1")
    (wheels / "other-1.0-py3-none-any.whl").write_bytes(b"x")
    monkeypatch.setenv("MLTAG_FIND_LINKS", str(wheels))
    assert envbuild.local_substitutes(["ram"]) == {"ram": wheel}
    text, subs = envbuild._substituted(fake_env.lock.read_text())
    assert f"ram @ {wheel.as_uri()}" in text and "numpy==2.4.6" in text and subs == {"ram": wheel}
    with_wheel = envbuild.env_key(fake_env)
    assert with_wheel != without  # the wheel is part of what was installed
    wheel.write_bytes(b"wheel v2")
    assert envbuild.env_key(fake_env) != with_wheel
    # a source folder only when named explicitly; relative paths are read from the project root
    source = tmp_path / "recognize-anything"
    source.mkdir()
    monkeypatch.setenv("MLTAG_FIND_LINKS", f"ram={source}")
    assert envbuild.local_substitutes(["ram"]) == {"ram": source}
    monkeypatch.setenv("MLTAG_FIND_LINKS", f"{source}")
    assert envbuild.local_substitutes(["ram"]) == {}


def test_env_built_from_a_recorded_wheel_stays_current(
    fake_env: envbuild.EnvPaths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_env.lock.write_text("ram @ git+https://example.org/ram@" + "7" * 40 + "\n")
    wheel = tmp_path / "ram-0.0.1-py3-none-any.whl"
    wheel.write_bytes(b"wheel")
    monkeypatch.setenv("MLTAG_FIND_LINKS", str(wheel))
    fake_env.python.parent.mkdir(parents=True)
    fake_env.python.touch()
    fake_env.marker.write_text(
        json.dumps({"key": envbuild.env_key(fake_env), "local": {"ram": str(wheel)}, "project_root": str(PROJECT_ROOT)})
    )
    monkeypatch.delenv("MLTAG_FIND_LINKS")
    assert envbuild.env_state("demo") == ("ready", "")  # no need to fetch the VCS reference again
    wheel.write_bytes(b"changed")
    assert envbuild.env_state("demo")[0] == "stale"
