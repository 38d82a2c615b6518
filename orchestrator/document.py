"""The result document (schemas/result.schema.json): its one shape.

A document is a header (versions, run id, times, options), the models' entries, and the images,
each with every model's cell. Images are never held together: `Results.images()` streams them
(from the results store, orchestrator/store/documents.py: `from_run`, `from_store`), so every
output (table, JSON, CSV, HTML, the comparison) costs the same memory for ten photos or a hundred
thousand. This module is the shape only: it imports nothing of the layers above it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from orchestrator import __version__

# 2: cells carry tag_count, images and the comparison's folder a summary (total_unique_tags, common_tags,
# model_agreement_score). Version-1 documents and every store still read: tag_count is added on reading.
SCHEMA_VERSION = 2


def iso_time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


def header(run_id: str, started: float, finished: float, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "mltag_version": __version__,
        "run_id": run_id,
        "started": iso_time(started),
        "duration_s": round(max(0.0, finished - started), 3),
        "options": options,
    }


@dataclass
class Results:
    """One document: header and models in memory, images streamed (`images()` may be called again)."""

    head: dict[str, Any]
    models: list[dict[str, Any]]
    images: Callable[[], Iterator[dict[str, Any]]]

    @classmethod
    def of(cls, document: dict[str, Any]) -> Results:
        """A document already in memory (a saved JSON, a test's) as Results."""
        head = {k: v for k, v in document.items() if k not in ("models", "images", "comparison")}
        return cls(head, list(document.get("models", [])), lambda: iter(document.get("images", [])))

    @property
    def options(self) -> dict[str, Any]:
        return self.head.get("options") or {}

    def document(self) -> dict[str, Any]:
        """The whole document in memory: for small documents only (health checks, tests)."""
        return {**self.head, "models": self.models, "images": list(self.images())}
