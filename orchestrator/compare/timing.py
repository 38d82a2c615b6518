"""Per-model timing and status counts over a folder's unique images."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

from schemas.status import SUCCESS

DEFINITION = ("load and warm-up: the model's load; inference: the ok / no_tags cells of the unique images "
              "(mean, p50, p95 by linear interpolation between ranks), images per second = images / their "
              "total inference seconds (load excluded); inference total: their sum; total: load + warm-up + inference "
              "total")
TIMED_STATUSES = SUCCESS


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1-99) of a non-empty list, linear interpolation between ranks (numpy's default)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def timed_seconds(cell: dict[str, Any]) -> float | None:
    """The inference time a cell counts with in the timing figures (None: it does not count)."""
    return _seconds(cell.get("inference_s")) if cell.get("status") in TIMED_STATUSES else None


def model_timing(model: dict[str, Any], cells: list[dict[str, Any]]) -> dict[str, Any]:
    """{"load_s", "warmup_s", "mean_s", "p50_s", "p95_s", "images_per_s", "n"} for one model."""
    return summarise(model, [t for c in cells if (t := timed_seconds(c)) is not None])


def summarise(model: dict[str, Any], times: Sequence[float]) -> dict[str, Any]:
    """model_timing from the model's entry and its cells' inference seconds."""
    times = list(times)
    total = sum(times)
    return {
        "load_s": _seconds(model.get("load_s")), "warmup_s": _seconds(model.get("warmup_s")),
        "mean_s": round(total / len(times), 6) if times else None,
        "p50_s": round(percentile(times, 50), 6) if times else None,
        "p95_s": round(percentile(times, 95), 6) if times else None,
        "images_per_s": round(len(times) / total, 6) if total > 0 else None,
        "n": len(times),
        "inference_total_s": round(total, 6),
        # what the model cost this run: load + warm-up + every timed inference (a missing part counts 0)
        "total_s": round(sum(v for v in (_seconds(model.get("load_s")), _seconds(model.get("warmup_s")), total)
                             if v is not None), 6),
    }


def status_counts(cells: list[dict[str, Any] | None]) -> dict[str, int]:
    """Status -> number of cells, most common first; a model with no cell for an image counts `missing`."""
    return dict(Counter((c or {}).get("status", "missing") for c in cells).most_common())
