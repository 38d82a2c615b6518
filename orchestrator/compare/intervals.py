"""95% bootstrap intervals over photos for `mltag eval` (and `mltag serve`'s ranking), in pure Python.

The photo is the unit: a resample draws as many labelled photos as there are, with replacement, and
recomputes each model's micro precision, recall and F1 from the summed per-photo TP / FP / FN. The
interval is the 2.5th to 97.5th percentile over the resamples (percentile bootstrap). "best" uses the
threshold chosen on all the labelled photos: its intervals leave out the optimism of that choice.

Paired bootstrap: the leader's and the runner-up's best F1 are computed on the SAME resamples, so the
photos both find hard cancel out; the leader is "ahead beyond noise" when the 95% interval of the
difference lies above zero.

Speed without numpy (the orchestrator never imports it): every count of every model on one photo is
packed into one Python integer, each in its own fixed-width bit field wide enough that no sum can
carry into the next field, so one resample is ONE sum of n big integers (done in C), then the fields
are read back with shifts. 1,000 photos x 20 models x 1,000 resamples: about a second (docs/performance.md).

Reproducible: a seeded `random.Random`, and photos are taken in sha256 order, so the same labelled
set gives the same numbers whatever order a caller lists the photos in.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
CONFIDENCE = 0.95
METRICS = ("precision", "recall", "f1")

Counts = tuple[int, int, int]  # (TP, FP, FN) of one model on one photo


@dataclass(frozen=True)
class Series:
    """One model's per-photo counts at one threshold, in the photos' order (zeros where it did not run:
    a photo without counts adds nothing to a micro sum, the same as leaving it out)."""

    model: str
    threshold: str  # "own" | "best"
    counts: Sequence[Counts]


def metrics(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Micro precision, recall and F1 of summed counts (0 when undefined, as evaluate.py reports them)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return precision, recall, (2 * tp / (2 * tp + fp + fn) if tp else 0.0)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of sorted values, linearly interpolated (numpy's default)."""
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _interval(values: list[float], confidence: float) -> list[float]:
    values.sort()
    tail = (1 - confidence) / 2
    return [round(percentile(values, tail), 6), round(percentile(values, 1 - tail), 6)]


def bootstrap(
    series: Sequence[Series],
    pair: tuple[str, str] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """Percentile intervals of each series' precision, recall and F1 over `resamples` resamples of the
    photos, and, for `pair` = (leader, runner-up), the paired interval of their best-F1 difference.

    Every series must list the same photos in the same order. Returns
    {"intervals": {model: {threshold: {"precision": [lo, hi], "recall": [...], "f1": [...]}}},
     "difference": {"interval": [lo, hi], "ahead": bool} | None}."""
    n = len(series[0].counts) if series else 0
    if any(len(s.counts) != n for s in series):
        raise ValueError("every series must count the same photos")
    if not n or resamples < 1:
        return {"intervals": {}, "difference": None}
    # one bit field per (series, count): wide enough for n times the largest per-photo count
    width = max(1, n * max((max(c) for s in series for c in s.counts), default=0)).bit_length() + 1
    mask = (1 << width) - 1
    packed = [0] * n
    for field, (s, k) in enumerate((s, k) for s in series for k in range(3)):
        shift = field * width
        for i, counts in enumerate(s.counts):
            if counts[k]:
                packed[i] += counts[k] << shift
    rng = random.Random(seed)
    photos = range(n)
    drawn: list[list[list[float]]] = [[[], [], []] for _ in series]  # per series: precision, recall, F1 values
    diffs: list[float] = []
    pair_at = _pair_positions(series, pair)
    for _ in range(resamples):
        total = sum(map(packed.__getitem__, rng.choices(photos, k=n)))
        f1s = []
        for position, values in enumerate(drawn):
            base = 3 * position * width
            p, r, f = metrics(
                (total >> base) & mask, (total >> (base + width)) & mask, (total >> (base + 2 * width)) & mask
            )
            values[0].append(p)
            values[1].append(r)
            values[2].append(f)
            f1s.append(f)
        if pair_at is not None:
            diffs.append(f1s[pair_at[0]] - f1s[pair_at[1]])
    intervals: dict[str, dict[str, dict[str, list[float]]]] = {}
    for s, values in zip(series, drawn, strict=True):
        intervals.setdefault(s.model, {})[s.threshold] = {
            name: _interval(v, confidence) for name, v in zip(METRICS, values, strict=True)
        }
    difference = None
    if pair_at is not None:
        low_high = _interval(diffs, confidence)
        difference = {"interval": low_high, "ahead": low_high[0] > 0}
    return {"intervals": intervals, "difference": difference}


def _pair_positions(series: Sequence[Series], pair: tuple[str, str] | None) -> tuple[int, int] | None:
    if pair is None:
        return None
    where = {(s.model, s.threshold): i for i, s in enumerate(series)}
    return where[(pair[0], "best")], where[(pair[1], "best")]


def per_photo_counts(by_photo: Mapping[str, Counts], order: Sequence[str]) -> list[Counts]:
    """Counts in the photos' order, zeros for a photo the model has none for."""
    return [by_photo.get(sha, (0, 0, 0)) for sha in order]
