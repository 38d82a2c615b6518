"""Turn a registry entry plus CLI choices into the LoadSpec a runner receives.

`--weights MODEL=PATH` takes the same kinds of PATH for every hub model, resolved here, before the
runner starts: a snapshot folder (the model's files, config.json beside the weights), or a Hugging
Face cache root holding the pinned revision (HF_HUB_CACHE, e.g. ~/.cache/huggingface/hub, or the
folder above it, or the repo's own models--ORG--NAME folder), which becomes the snapshot folder of
that revision (huggingface_hub's layout: models--ORG--NAME/refs/REV holds the commit of a tag or
branch, models--ORG--NAME/snapshots/COMMIT/ the files). Any other folder or file is given to the
adapter as it is (some take their own layouts: clip-interrogator's DIR/caption + DIR/clip).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.errors import UsageError
from orchestrator.models.registry import ModelSpec
from orchestrator.paths import adapter_cache_dir, read_vocabulary
from schemas.protocol import LoadSpec


def build_load_spec(
    spec: ModelSpec,
    *,
    weights: Path | None = None,
    offline: bool = False,
    device: str = "auto",
    dtype: str = "auto",
    warmup: bool = False,
    overrides: dict[str, Any] | None = None,
    exact_decode: bool = False,
) -> LoadSpec:
    # exact_decode is a load option so that the store's options key tells fast and exact cells apart.
    options: dict[str, Any] = {**spec.load, "exact_decode": exact_decode, **(overrides or {})}
    if isinstance(options.get("vocabulary"), str):
        options["vocabulary_name"] = options["vocabulary"]
        options["vocabulary"] = read_vocabulary(options["vocabulary"], spec.folder)
    return {
        "name": spec.name,
        "hub_id": spec.hub_id,
        "revision": spec.revision,
        "local_path": str(resolve_weights(spec, weights)) if weights else None,
        "offline": offline,
        "device": device,
        "dtype": dtype,
        "remote_code": spec.remote_code,
        "cache_dir": str(adapter_cache_dir() / spec.name),
        "options": options,
        "warmup": warmup,
    }


def weights_kinds(hub_id: str, revision: str) -> str:
    """What `--weights MODEL=PATH` takes, in words (messages and fixes say it the same way)."""
    return (
        f"a snapshot folder of {hub_id} (its config.json and weights), or a Hugging Face cache root holding "
        f"{hub_id} at the pinned revision {revision[:12]}"
    )


def resolve_weights(spec: ModelSpec, weights: Path) -> Path:
    """The folder (or file) the runner loads for `--weights NAME=weights`: a Hugging Face cache root
    becomes the snapshot folder of the pinned revision; anything else is returned as it is (absolute).
    A cache that holds the repo but not that revision is a UsageError naming what it holds."""
    path = Path(weights).expanduser().resolve()
    repo_folder = "models--" + spec.hub_id.replace("/", "--")
    repo = next(
        (p for p in (path / repo_folder, path / "hub" / repo_folder, path) if p.name == repo_folder and p.is_dir()),
        None,
    )
    if repo is None:
        if path.is_dir() and any(p.name.startswith("models--") for p in path.iterdir()):
            raise UsageError(
                f"--weights {spec.name}={weights}: this Hugging Face cache does not hold {spec.hub_id} "
                f"(no {repo_folder} in it)",
                fix="point --weights at " + weights_kinds(spec.hub_id, spec.revision),
            )
        return path
    revision = spec.revision
    commit = revision
    ref = repo / "refs" / revision
    if not (repo / "snapshots" / revision).is_dir() and ref.is_file():
        commit = ref.read_text().strip()  # a tag or branch: refs/ names its commit
    snapshot = repo / "snapshots" / commit
    if snapshot.is_dir():
        return snapshot
    held = sorted(p.name[:12] for p in (repo / "snapshots").glob("*") if p.is_dir())
    raise UsageError(
        f"--weights {spec.name}={weights}: this Hugging Face cache holds {spec.hub_id} but not its "
        f"pinned revision {revision[:12]} (it holds: {', '.join(held) or 'no snapshot'})",
        fix=f"hf download {spec.hub_id} --revision {revision} --cache-dir {weights}; or point --weights "
        f"at {weights_kinds(spec.hub_id, revision)}",
    )
