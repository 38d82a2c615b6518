"""Every shipped model.toml is valid, and selection gives useful errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.errors import RegistryError, UnknownModel
from orchestrator.models import envbuild
from orchestrator.models.registry import load_registry, select

# Models no commit could be found for offline (their model.toml says so): they follow `main`, and
# results record the snapshot actually loaded. Keep this list empty where possible.
UNPINNED = {"paligemma-long"}
# Pinned to a dated release tag, as the model card asks (no commit hash could be read offline).
TAGGED = {"moondream2": "2025-06-21"}


def test_shipped_registry_is_valid() -> None:
    registry = load_registry()
    assert {"clip", "wd14", "florence2"} <= set(registry)
    for spec in registry.values():
        if spec.name in UNPINNED:
            assert spec.revision == "main" and "no public source" in (spec.folder / "model.toml").read_text()
            continue
        if spec.server:  # a served model (Ollama): the server resolves names; results name its digest
            assert spec.revision == "latest" and not spec.remote_code
        elif spec.name in TAGGED:
            assert spec.revision == TAGGED[spec.name] and "release tag" in (spec.folder / "model.toml").read_text()
        else:
            assert len(spec.revision) == 40 and int(spec.revision, 16) >= 0, f"{spec.name}: pin a full commit hash"
        assert spec.upstream_code == "yes" or spec.upstream_code.startswith(("no:", "stand-in")), spec.name
        assert envbuild.env_paths(spec.env).requirements_in.exists(), f"{spec.name}: env {spec.env} has no .in"
        assert envbuild.env_paths(spec.env).lock.exists(), f"{spec.name}: env {spec.env} has no lock"
        assert (Path(__file__).parents[2] / (spec.adapter.replace(".", "/") + ".py")).exists()


def test_locks_pin_every_package_exactly() -> None:
    for lock in envbuild.env_paths("modern").lock.parent.glob("*.txt"):
        for line in lock.read_text().splitlines():
            line = line.split("#")[0].strip()
            if " @ " in line:  # a package not on PyPI: a VCS reference pinned to a full commit
                assert re.fullmatch(r"[\w.-]+ @ git\+https://\S+@[0-9a-f]{40}", line), f"{lock.name}: {line}"
                continue
            if line:
                assert "==" in line, f"{lock.name}: {line} is not pinned"
                assert not line.startswith("torch=="), "torch is pinned on the install command, not in locks"
                assert not line.startswith("nvidia"), f"{lock.name}: CUDA package {line} in a lock"


def test_unknown_model_suggests_a_close_name() -> None:
    with pytest.raises(UnknownModel, match="did you mean 'florence2'"):
        select(load_registry(), "florance2")


def test_all_and_dedup() -> None:
    registry = load_registry()
    everything = select(registry, "all")  # every image model; judges run only with --judge
    assert {s.name for s in everything} == {name for name, s in registry.items() if s.kind != "judge" and not s.opt_in}
    # a hosted API (photos leave the machine) or an endpoint not named yet runs only when named
    assert {n for n, s in registry.items() if s.opt_in} == {"openai-gpt4o", "openai-compatible"}
    assert "qwen2vl-72b-vllm" in {s.name for s in everything}  # a local vLLM (127.0.0.1) counts as local
    assert "qwen25-judge" in registry and registry["qwen25-judge"].kind == "judge"
    assert [s.name for s in select(registry, "wd14, wd14")] == ["wd14"]


def test_invalid_model_toml_is_reported(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.toml").write_text('adapter = "runners.adapters.x"\nkind = "painter"\n')
    with pytest.raises(RegistryError, match="missing env, hub_id, revision"):
        load_registry(tmp_path)
    (tmp_path / "broken" / "model.toml").write_text(
        'adapter = "runners.adapters.x"\nkind = "painter"\nenv = "e"\nhub_id = "a/b"\nrevision = "r"\n'
    )
    with pytest.raises(RegistryError, match="kind 'painter'"):
        load_registry(tmp_path)


def test_remote_code_needs_a_pinned_revision(tmp_path: Path) -> None:
    folder = tmp_path / "envs" / "rc"
    folder.mkdir(parents=True)
    toml = folder / "model.toml"
    body = 'adapter = "runners.adapters.x"\nkind = "captioner"\nenv = "tf4"\nhub_id = "a/b"\nremote_code = true\n'
    toml.write_text(body + 'revision = "main"\n')
    with pytest.raises(RegistryError, match="remote_code = true needs a pinned revision"):
        load_registry(tmp_path / "envs")
    toml.write_text(body + 'revision = "2025-06-21"\n')
    assert load_registry(tmp_path / "envs")["rc"].remote_code is True


def test_remote_code_models_are_marked() -> None:
    registry = load_registry()
    assert {n for n, s in registry.items() if s.remote_code} == {"moondream2", "minicpm-v45", "phi35-vision"}
    assert not registry["ram-plus"].remote_code and not registry["clip-interrogator"].remote_code
