"""What to label next: the unlabelled photos that best tell the leading models apart, spread over folders.

Only a tag that some leading models give and others do not can change their ranking: a tag they all
give, or none gives, adds the same TP, FP or FN to each. So a photo's worth is its number of *disputed*
tags among the leading models (ties: the lower mean pairwise Jaccard agreement first, then sha256, so
the queue is the same for the same store whatever order the photos are read in). Photos are taken
round-robin over their folders (folders in the order of their best photo), so ~50 labels cover the
archive instead of the one shoot the models argue most about; photos where the leaders agree come last.

    leaders = leading_models(evaluation, models)          # the top 3 of `mltag eval`, else every model
    queue = label_queue(images, done, normaliser, leaders, best_thresholds(evaluation), limit=50)

Memory: each folder keeps at most `limit` candidates, however many photos it holds.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from orchestrator.compare.cells import cell_tags, jaccard

LEADERS = 3
ANSWERED = frozenset({"ok", "no_tags"})  # cells that say which tags the photo has (a failure says nothing)


@dataclass(frozen=True)
class Candidate:
    """One photo to label: how much labelling it tells the leading models apart."""

    sha256: str
    path: str
    folder: str
    disputed: int  # tags some leading models gave and others did not
    agreement: float  # mean pairwise Jaccard of the leaders' tag sets (1: identical; 1 when < 2 answered)

    @property
    def key(self) -> tuple[int, float, str]:
        return -self.disputed, self.agreement, self.sha256


def leading_models(evaluation: Mapping[str, Any] | None, models: Sequence[str], k: int = LEADERS) -> list[str]:
    """The k best-ranked models of an evaluation that have results; every model of `models` when there is
    no evaluation yet (nothing labelled: all of them are the contenders)."""
    ranked = [r["model"] for r in (evaluation or {}).get("models", []) if r.get("best") is not None]
    return ranked[:k] if len(ranked) >= 2 else list(models)


def best_thresholds(evaluation: Mapping[str, Any] | None) -> dict[str, float | None]:
    """Each evaluated model's best threshold (None: its own), to judge disagreement where it is strongest."""
    return {r["model"]: (r.get("best") or {}).get("threshold") for r in (evaluation or {}).get("models", [])}


def disagreement(
    image: Mapping[str, Any],
    leaders: Sequence[str],
    normaliser: Callable[[str], str],
    thresholds: Mapping[str, float | None] | None = None,
) -> tuple[int, float]:
    """(disputed tags, mean pairwise Jaccard) of the leaders that answered on this photo."""
    results = image.get("results") or {}
    sets = [
        set(cell_tags(results[m], normaliser, (thresholds or {}).get(m)))
        for m in leaders
        if (results.get(m) or {}).get("status") in ANSWERED
    ]
    if len(sets) < 2:
        return 0, 1.0
    disputed = len(sets[0].union(*sets[1:]) - sets[0].intersection(*sets[1:]))
    pairs = [j if (j := jaccard(a, b)) is not None else 1.0 for a, b in combinations(sets, 2)]
    return disputed, sum(pairs) / len(pairs)


def label_queue(
    images: Iterable[Mapping[str, Any]],
    labelled: Collection[str],
    normaliser: Callable[[str], str],
    leaders: Sequence[str],
    thresholds: Mapping[str, float | None] | None = None,
    limit: int = 50,
) -> list[Candidate]:
    """Up to `limit` unlabelled photos (not in `labelled`, by sha256) to label next, best first: photos the
    leaders dispute, round-robin over folders, then the undisputed ones the same way. `images`: the
    stored document's images (streamed is fine); a `duplicate_of` copy is the same photo and is skipped."""
    by_folder: dict[str, list[Candidate]] = {}
    for image in images:
        if image.get("duplicate_of") or image["sha256"] in labelled:
            continue
        tags, agreement = disagreement(image, leaders, normaliser, thresholds)
        path = str(image["path"])
        folder = os.path.dirname(path)
        kept = by_folder.setdefault(folder, [])
        kept.append(Candidate(image["sha256"], path, folder, tags, round(agreement, 6)))
        if len(kept) >= 2 * max(limit, 1):  # trim now and then: a folder never needs more than `limit`
            kept.sort(key=lambda c: c.key)
            del kept[limit:]
    for kept in by_folder.values():
        kept.sort(key=lambda c: c.key)
        del kept[limit:]
    disputed = {f: [c for c in kept if c.disputed] for f, kept in by_folder.items()}
    agreed = {f: [c for c in kept if not c.disputed] for f, kept in by_folder.items()}
    queue = _round_robin(disputed, limit)
    return queue + _round_robin(agreed, limit - len(queue))


def _round_robin(by_folder: dict[str, list[Candidate]], limit: int) -> list[Candidate]:
    """One photo per folder per round, folders in the order of their best photo (then name)."""
    folders = sorted((f for f, c in by_folder.items() if c), key=lambda f: (by_folder[f][0].key, f))
    out: list[Candidate] = []
    depth = 0
    while len(out) < limit and folders:
        folders = [f for f in folders if depth < len(by_folder[f])]
        for folder in folders:
            if len(out) == limit:
                break
            out.append(by_folder[folder][depth])
        depth += 1
    return out
