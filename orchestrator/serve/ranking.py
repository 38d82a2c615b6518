"""The ranking panel: `mltag eval`'s own computation over the photos marked done in the store.

Only the done photos' cells are read (a person labels hundreds or thousands of photos, not the whole
archive), so recomputing on every "done" costs the same whatever the archive's size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.compare.evaluate import evaluate
from orchestrator.store import ResultStore

READ_CHUNK = 256


def ranking(store: ResultStore, entries: list[dict[str, Any]], normalise: Callable[[str], str],
            paths: Callable[[str], str | None], total_images: int) -> dict[str, Any]:
    """eval's result (the same numbers) for the done photos among the app's images (`paths(sha)`: the
    path of an image the app shows, None for one outside it)."""
    rows = [row for row in store.label_rows() if paths(row.key) is not None]
    models = [e["name"] for e in entries]
    images: list[dict[str, Any]] = []
    for i in range(0, len(rows), READ_CHUNK):
        chunk = [row.key for row in rows[i:i + READ_CHUNK]]
        cells = store.cells_of(chunk, models)
        images += [{"sha256": sha, "path": paths(sha), "results": cells.get(sha, {})} for sha in chunk]
    result = evaluate({"models": entries, "images": images}, rows, normalise)
    result["unlabelled"] = max(0, total_images - result["labelled"])
    return result
