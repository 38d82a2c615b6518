"""Turn a registry entry plus CLI choices into the LoadSpec a runner receives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.paths import DATA_DIR, adapter_cache_dir
from orchestrator.registry import ModelSpec
from schemas.protocol import LoadSpec


def read_vocabulary(ref: str, model_folder: Path) -> list[str]:
    """A built-in vocabulary name (orchestrator/data/<name>_vocabulary.txt) or a file path.

    One term per line; blank lines and `#` comments are ignored; duplicates dropped.
    """
    builtin = DATA_DIR / f"{ref}_vocabulary.txt"
    path = builtin if builtin.exists() else (model_folder / ref).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"vocabulary {ref!r} not found (looked for {builtin} and {path})")
    terms: list[str] = []
    for line in path.read_text().splitlines():
        term = line.split("#", 1)[0].strip()
        if term and term not in terms:
            terms.append(term)
    return terms


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
