"""Turn a registry entry plus CLI choices into the LoadSpec a runner receives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.models.registry import ModelSpec
from orchestrator.paths import adapter_cache_dir, read_vocabulary
from schemas.protocol import LoadSpec


def build_load_spec(spec: ModelSpec, *, weights: Path | None = None, offline: bool = False, device: str = "auto",
                    dtype: str = "auto", warmup: bool = False, overrides: dict[str, Any] | None = None,
                    exact_decode: bool = False) -> LoadSpec:
    # exact_decode is a load option so that the store's options key tells fast and exact cells apart.
    options: dict[str, Any] = {**spec.load, "exact_decode": exact_decode, **(overrides or {})}
    if isinstance(options.get("vocabulary"), str):
        options["vocabulary_name"] = options["vocabulary"]
        options["vocabulary"] = read_vocabulary(options["vocabulary"], spec.folder)
    return {"name": spec.name, "hub_id": spec.hub_id, "revision": spec.revision,
            "local_path": str(Path(weights).expanduser().resolve()) if weights else None,
            "offline": offline, "device": device, "dtype": dtype, "remote_code": spec.remote_code,
            "cache_dir": str(adapter_cache_dir() / spec.name), "options": options, "warmup": warmup}
