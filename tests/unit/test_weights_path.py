"""`--weights MODEL=PATH` takes the same kinds of PATH for every hub model (orchestrator/models/loadspec.py):
a snapshot folder, or a Hugging Face cache root holding the pinned revision, which is resolved to that
revision's snapshot folder before the runner starts. The cache layouts here are written by hand in
huggingface_hub's shape (models--ORG--NAME/refs/REV, snapshots/COMMIT/); no weights are needed to
resolve a path."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from orchestrator.cli.choices import check_weights
from orchestrator.errors import UsageError
from orchestrator.models.loadspec import build_load_spec, resolve_weights
from orchestrator.models.registry import ModelSpec, load_registry

COMMIT = "fd3209b2e0580e346fc33d2c6f85b6e9332eecda"
OTHER = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return load_registry()["minicpm-v45"]  # openbmb/MiniCPM-V-4_5 pinned at a commit


def _cache(root: Path, hub_id: str, commit: str, ref: str | None = None) -> Path:
    """A Hugging Face cache holding `hub_id` at `commit` (and refs/`ref` naming it); its snapshot folder."""
    repo = root / ("models--" + hub_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"model_type": "minicpmv"}')
    if ref is not None:
        (repo / "refs").mkdir()
        (repo / "refs" / ref).write_text(commit + "\n")
    return snapshot


def test_a_snapshot_folder_is_given_as_it_is(tmp_path: Path, spec: ModelSpec) -> None:
    snapshot = _cache(tmp_path, spec.hub_id, COMMIT)
    assert resolve_weights(spec, snapshot) == snapshot
    plain = tmp_path / "my-download"
    plain.mkdir()
    assert resolve_weights(spec, plain) == plain


@pytest.mark.parametrize("given", ["hub", ".", "hub/models--openbmb--MiniCPM-V-4_5"])
def test_a_cache_root_becomes_the_pinned_snapshot(tmp_path: Path, spec: ModelSpec, given: str) -> None:
    """HF_HUB_CACHE, the folder above it (~/.cache/huggingface) or the repo's own folder."""
    _cache(tmp_path / "hub", "openbmb/other-model", COMMIT)  # another model beside it
    _cache(tmp_path / "hub", spec.hub_id, OTHER)  # and another revision
    snapshot = tmp_path / "hub" / "models--openbmb--MiniCPM-V-4_5" / "snapshots" / COMMIT
    (snapshot / "config.json").parent.mkdir(parents=True)
    assert resolve_weights(spec, tmp_path / given) == snapshot
    load_spec = build_load_spec(spec, weights=tmp_path / given)
    assert load_spec["local_path"] == str(snapshot)


def test_a_tag_is_found_through_refs(tmp_path: Path, spec: ModelSpec) -> None:
    tagged = dataclasses.replace(spec, revision="2025-06-21")
    snapshot = _cache(tmp_path, spec.hub_id, COMMIT, ref="2025-06-21")
    assert resolve_weights(tagged, tmp_path) == snapshot


def test_a_cache_without_the_pinned_revision_is_a_usage_error(tmp_path: Path, spec: ModelSpec) -> None:
    _cache(tmp_path, spec.hub_id, OTHER)
    with pytest.raises(
        UsageError,
        match=r"holds openbmb/MiniCPM-V-4_5 but not its pinned revision fd3209b2e058 "
        r"\(it holds: 0123456789ab\)",
    ) as caught:
        resolve_weights(spec, tmp_path)
    assert caught.value.fix is not None and f"--revision {COMMIT}" in caught.value.fix
    with pytest.raises(UsageError, match="not its pinned revision"):  # the CLI checks before any model runs
        check_weights({spec.name: tmp_path}, [spec])


def test_a_cache_without_the_model_is_a_usage_error(tmp_path: Path, spec: ModelSpec) -> None:
    _cache(tmp_path, "openbmb/other-model", COMMIT)
    with pytest.raises(UsageError, match="does not hold openbmb/MiniCPM-V-4_5"):
        resolve_weights(spec, tmp_path)


def test_a_missing_path_is_named(tmp_path: Path, spec: ModelSpec) -> None:
    with pytest.raises(UsageError, match="path does not exist"):
        check_weights({spec.name: tmp_path / "nope"}, [spec])
