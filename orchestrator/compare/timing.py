"""Per-model timing and status counts over a folder's unique images."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

from orchestrator.document import Cell, ModelEntry, ModelTiming
from schemas.status import SUCCESS

DEFINITION = (
    "load and warm-up: the model's load; inference: the ok / no_tags cells of the unique images "
    "(mean, p50, p95 by linear interpolation between ranks), images per second = images / their "
    "total inference seconds (load excluded); inference total: their sum; total: load + warm-up + inference "
    "total; tokens in / out: the prompt and generated tokens of every cell that reports them (a "
    "captioner's raw.generations, an endpoint's raw.usage: what a paid API bills), failed cells included; "
    "retries: requests an endpoint answered with 429 / 5xx / a timeout / a dropped connection, retried"
)
TIMED_STATUSES = SUCCESS


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def cell_usage(cell: Cell) -> tuple[int, int, int] | None:
    """(prompt tokens, generated tokens, retries) a cell reports, or None when it reports no token counts:
    raw.usage (an OpenAI-compatible endpoint's, summed over the prompts), else the sums over raw.generations
    (every captioner records prompt_tokens and new_tokens per prompt)."""
    raw = cell.get("raw")
    if not isinstance(raw, dict):
        return None
    usage = raw.get("usage")
    if isinstance(usage, dict):
        return _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")), _count(raw.get("retries"))
    runs = raw.get("generations")
    if isinstance(runs, dict) and runs and all(isinstance(r, dict) for r in runs.values()):
        if not any(
            isinstance(r.get("prompt_tokens"), int) or isinstance(r.get("new_tokens"), int) for r in runs.values()
        ):
            return None
        return (
            sum(_count(r.get("prompt_tokens")) for r in runs.values()),
            sum(_count(r.get("new_tokens")) for r in runs.values()),
            0,
        )
    return None


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (1-99) of a non-empty list, linear interpolation between ranks (numpy's default)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def timed_seconds(cell: Cell) -> float | None:
    """The inference time a cell counts with in the timing figures (None: it does not count)."""
    return _seconds(cell.get("inference_s")) if cell.get("status") in TIMED_STATUSES else None


def model_timing(model: ModelEntry, cells: list[Cell]) -> ModelTiming:
    """{"load_s", "warmup_s", "mean_s", "p50_s", "p95_s", "images_per_s", "n"} for one model."""
    return summarise(model, [t for c in cells if (t := timed_seconds(c)) is not None])


def summarise(model: ModelEntry, times: Sequence[float], usage: Sequence[int] | None = None) -> ModelTiming:
    """model_timing from the model's entry and its cells' inference seconds; `usage`: (prompt tokens, generated
    tokens, retries) summed over its cells that report tokens, when any does (the keys are absent otherwise)."""
    times = list(times)
    total = sum(times)
    out: ModelTiming = {
        "load_s": _seconds(model.get("load_s")),
        "warmup_s": _seconds(model.get("warmup_s")),
        "mean_s": round(total / len(times), 6) if times else None,
        "p50_s": round(percentile(times, 50), 6) if times else None,
        "p95_s": round(percentile(times, 95), 6) if times else None,
        "images_per_s": round(len(times) / total, 6) if total > 0 else None,
        "n": len(times),
        "inference_total_s": round(total, 6),
        # what the model cost this run: load + warm-up + every timed inference (a missing part counts 0)
        "total_s": round(
            sum(v for v in (_seconds(model.get("load_s")), _seconds(model.get("warmup_s")), total) if v is not None), 6
        ),
    }
    if usage is not None:
        out["prompt_tokens"], out["completion_tokens"], out["retries"] = usage
    return out


def status_counts(cells: list[Cell | None]) -> dict[str, int]:
    """Status -> number of cells, most common first; a model with no cell for an image counts `missing`."""
    return dict(Counter(c.get("status", "missing") if c else "missing" for c in cells).most_common())
