"""The remote-code policy, runner side: `trust_remote_code` only when the model's model.toml says
`remote_code = true`, and only for the pinned revision or a local folder the user named.

The orchestrator refuses `remote_code = true` with a branch as revision (orchestrator/models/registry.py);
this module refuses it again where the code actually runs, so no adapter can load repository code
from a moving branch or for a model whose model.toml does not allow it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from runners.base import require_config
from schemas.protocol import LoadSpec

UNPINNED = ("", "main", "master", "head", "latest", "dev")


class RemoteCodeRefused(RuntimeError):
    pass


def remote_code_source(spec: LoadSpec) -> tuple[str, dict[str, Any]]:
    """(what to give from_pretrained, its keyword arguments) for a remote-code model.

    The pinned hub id and revision (with `local_files_only` when offline), or the local folder of
    `--weights`. Raises RemoteCodeRefused when the model may not run remote code or is unpinned.
    """
    if not spec.get("remote_code"):
        raise RemoteCodeRefused(
            f"{spec['name']} needs trust_remote_code (its loader runs Python files from the "
            f"model repository) but its model.toml does not say remote_code = true"
        )
    if local := spec.get("local_path"):
        require_config(Path(local), spec)  # else transformers lists every model type it knows
        return local, {"trust_remote_code": True}
    revision = spec["revision"]
    if revision.lower() in UNPINNED:
        raise RemoteCodeRefused(
            f"{spec['name']}: refusing remote code from the unpinned revision {revision!r}; "
            f"pin a commit or release tag in envs/{spec['name']}/model.toml"
        )
    kwargs: dict[str, Any] = {"trust_remote_code": True, "revision": revision}
    if spec["offline"] or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        kwargs["local_files_only"] = True
    return spec["hub_id"], kwargs


def use_hub_cache(folder: Path) -> None:
    """Point the Hugging Face cache at `folder` for this runner (a user's `--weights` that is a hub
    cache: code, weights and the helper repos remote code fetches by name are all read from it)."""
    os.environ["HF_HUB_CACHE"] = str(folder)
    if "huggingface_hub" in sys.modules:  # constants are read at import time
        from huggingface_hub import constants

        constants.HF_HUB_CACHE = str(folder)
