"""The options key: which cells a re-run may reuse.

A stable hash of what changes a model's results: the adapter, hub id and pinned revision, local
weights (the path plus the names, sizes and mtimes of its files: rebuilt weights are new weights),
the load options (vocabulary expanded to its terms), the infer options after --option overrides,
and the requested dtype. Device, batch size, timeouts and --warmup are not in it: they change how
fast a result comes, not which result; nor are a served model's request settings (SPEED_OPTIONS:
concurrency, retries, deadlines), so that a re-run with another concurrency does not pay a hosted API
again for the photos it has.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Load options of runners/adapters/openai_compat.py that change how fast and how persistently it asks, not what.
SPEED_OPTIONS = frozenset({"concurrency", "max_retries", "deadline_s", "request_timeout_s", "backoff_s"})


# -- the options key ---------------------------------------------------------------------------------
def _weights_fingerprint(path: str) -> dict[str, Any]:
    root = Path(path)
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {
        "path": str(root),
        "files": [
            (str(p.relative_to(root)) if p != root else p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files
        ],
    }


def options_key(adapter: str, load_spec: Mapping[str, Any], infer_options: Mapping[str, Any]) -> str:
    """A stable hash of what changes a model's results (see the module docstring)."""
    local = load_spec.get("local_path")
    # The key names the adapter as it was before adapters moved to runners/adapters/: a store written
    # then stays valid (a re-run of an unchanged archive computes nothing again).
    family = adapter.replace("runners.adapters.", "runners.", 1)
    parts = {
        "adapter": family,
        "hub_id": load_spec.get("hub_id"),
        "revision": load_spec.get("revision"),
        "weights": _weights_fingerprint(local) if local and Path(local).exists() else local,
        "load": {k: v for k, v in (load_spec.get("options") or {}).items() if k not in SPEED_OPTIONS},
        "infer": dict(infer_options),
        "dtype": load_spec.get("dtype"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
