"""Compare the models of one result document: agreement matrix, consensus tags, model agreement.

Reads the document, never changes it: the comparison is a separate JSON-safe dict (`definitions`,
`folder`, `images`; described in schemas/result.schema.json), which the CLI stores under
`document["comparison"]` for the json, html and table reports.

Rules that every figure follows:
- Only cells with status `ok` contribute tags; `--threshold` drops tags below it first.
- Tags are compared under their normalised names (compare/normalise.py); when two raw tags of one
  cell normalise to the same name, the higher score counts.
- Caption tags come from orchestrator/compare/captags.py (one stoplist, one urbex phrase list), added to
  documents by captags.finish_cell; a caption cell without tags gets them the same way here.
  Their scores are `estimated` and marked so wherever they show; they go through the same
  normaliser as every other tag.
- The matrix, the consensus and the agreement use each model's top-K tags per image (K =
  --compare-top, 10 by default; --top only limits what is shown): a zero-shot model scores every
  term of its vocabulary, and counting them all would make every tag "agreed". `confidence` (for
  --show-confidence) keeps every tag above the threshold.
- Consensus tags (`common_tags`) are the tags at least k models gave, k = --consensus-min, by
  default 3/4 of the models that answered (an ok cell), rounded up.
- Images are counted once per content hash (duplicates share one result).
- Rating tags (WD14's general / sensitive / questionable / explicit, category `rating`) say how
  suitable the content is, not what is in the photo: left out, as the judge leaves them out.
- A judge (kind `judge`) merges the other models' outputs, so it is no independent voice: it is
  left out of the matrix, the consensus and the agreement, and kept in confidence, timing and
  status counts (`synthesis` lists such models).
"""

from __future__ import annotations

import itertools
import math
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.compare import timing
from orchestrator.compare.cells import (
    CLOSED_KINDS,
    CellTags,
    cell_tags,
    jaccard,
    model_names,
    top,
    unique_images,
    vocab_scores,
)
from orchestrator.compare.normalise import DEFINITION as NORMALISATION
from orchestrator.compare.normalise import Normaliser
from orchestrator.document import (
    Body,
    Cell,
    ComparisonResult,
    ConsensusItem,
    ImageComparison,
    ImageEntry,
    MatrixRow,
    ModelEntry,
    TagSummary,
)

DIGITS = 6
CONSENSUS_SHARE = 0.75  # default cut-off: 3/4 of the models that answered, rounded up
SYNTHESIS_KINDS = frozenset({"judge"})
ESTIMATED = (
    "~ marks an estimated score: a tag extracted from a caption, scored from its position and "
    "frequency there, not a model probability"
)


def consensus_cutoff(answered: int, minimum: int | None = None) -> int:
    """k of "CONSENSUS (k+ models)": --consensus-min, else 3/4 of the models that answered, rounded up (>= 1)."""
    if minimum is not None:
        return max(1, minimum)
    return max(1, math.ceil(CONSENSUS_SHARE * answered))


def definitions(top_k: int, threshold: float | None, consensus_min: int | None = None) -> dict[str, str]:
    which = f"each model's top-{top_k} normalised tags" if top_k > 0 else "all normalised tags of each model"
    cut = f", tags scored below {threshold:g} dropped first" if threshold is not None else ""
    k = (
        f"at least {consensus_min} models (--consensus-min)"
        if consensus_min is not None
        else "at least k models, k = 3/4 of the models that answered (an ok cell), rounded up"
    )
    return {
        "normalisation": NORMALISATION,
        "consensus_score": (
            "per image: (models whose top tags hold the tag) x (their mean confidence); over the "
            "folder: that per-image score averaged over all unique images (0 where no model gave "
            "the tag)"
        ),
        "agreement": (
            f"mean pairwise Jaccard |A∩B| / |A∪B| of {which} (ok cells only"
            f"{cut}); per image: the mean over model pairs; folder: each pair's mean over the images "
            "both models scored, then the mean over pairs; pairs where both lists are empty are left out"
        ),
        "estimated": ESTIMATED,
        "top_k": (
            f"the matrix, the consensus and the agreement use {which}, per image{cut} (--compare-top; "
            "--top only limits what the table shows)"
        ),
        "common_tags": (
            f"consensus (common_tags): the tags {k} gave, best consensus score first; per image over "
            "that image's answers, for the folder over every model that answered somewhere (a tag "
            "counts for a model when it is in the model's compared tags of at least one image)"
        ),
        "total_unique_tags": "distinct normalised tags among the compared tags of every model (judges left out)",
        "only_vocabulary": (
            "a tag one model gave that no other answering closed-vocabulary model (tagger, "
            "zero-shot) has in its label set, e.g. a Danbooru-only WD14 tag; captioners are "
            "open-vocabulary and not counted"
        ),
        "timing": timing.DEFINITION,
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, DIGITS)


def _pairwise(models: list[str], sets: dict[str, set[str]]) -> dict[str, dict[str, float | None]]:
    """Model x model Jaccard; None for a model without an ok cell (absent from `sets`)."""
    return {a: {b: jaccard(sets[a], sets[b]) if a in sets and b in sets else None for b in models} for a in models}


def _agreement(
    models: list[str], pairwise: dict[str, dict[str, float | None]], scored: int
) -> tuple[float | None, str | None]:
    """Mean over unordered pairs with a value, and why there is none when there is none."""
    if len(models) < 2:
        return None, "only one model: agreement needs two"
    values = [v for a, b in itertools.combinations(models, 2) if (v := pairwise[a][b]) is not None]
    if values:
        return _mean(values), None
    if scored < 2:
        return None, "fewer than two models have ok results"
    return None, "no pair of models has a tag to compare"


@dataclass
class _Sum:
    """A running count, sum and "any estimated" of scores: what a list of them was summarised to."""

    n: int = 0
    total: float = 0.0
    estimated: bool = False

    def add(self, score: float, estimated: bool = False) -> None:
        self.n += 1
        self.total += score
        self.estimated = self.estimated or estimated

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


@dataclass
class _TagStats:
    """One tag's numbers over the folder (running sums: memory does not grow with the images)."""

    per_model: dict[str, _Sum] = field(default_factory=dict)  # in the model's top-K
    images: int = 0
    image_score_sum: float = 0.0  # sum of per-image consensus scores


def _consensus_item(
    tag: str, models: list[str], per_model: dict[str, _Sum], score: float, images: int
) -> ConsensusItem:
    givers = [m for m in models if m in per_model and per_model[m].n]
    n = sum(per_model[m].n for m in givers)
    total = sum(per_model[m].total for m in givers)
    return {
        "tag": tag,
        "n_models": len(givers),
        "mean_confidence": _round(total / n if n else None),
        "score": round(score, DIGITS),
        "images": images,
        "models": givers,
        "estimated": any(per_model[m].estimated for m in givers),
    }


def _rank(items: list[ConsensusItem]) -> list[ConsensusItem]:
    return sorted(items, key=lambda i: (-i["score"], -i["n_models"], i["tag"]))


class Comparison:
    """The comparison, fed one image at a time (`add`), summarised at the end (`result`).

    Folder figures are running sums, so memory does not grow with the number of images; each
    image's own figures are returned by `add` for the caller to show or write as it goes."""

    def __init__(
        self,
        models: Sequence[ModelEntry],
        top_k: int = 10,
        threshold: float | None = None,
        normaliser: Callable[[str], str] | None = None,
        consensus_min: int | None = None,
    ) -> None:
        self.entries = {m["name"]: m for m in models}
        self.models = list(self.entries)
        self.top_k, self.threshold, self.consensus_min = top_k, threshold, consensus_min
        self._vocab: dict[str, frozenset[str]] = {}  # closed-vocabulary model -> its normalised label set
        self.normalise = normaliser or Normaliser()
        self.synthesis = [m for m in self.models if self.entries[m].get("kind") in SYNTHESIS_KINDS]
        self.voices = [m for m in self.models if m not in self.synthesis]
        self.n_images = 0
        self._stats: dict[str, _TagStats] = {}
        self._confidence: dict[str, dict[str, _Sum]] = {}
        self._pairs: dict[tuple[str, str], _Sum] = {}
        self._times: dict[str, array[float]] = {m: array("d") for m in self.models}
        self._usage: dict[str, list[int]] = {}  # model -> [prompt tokens, generated tokens, retries]
        self._statuses: dict[str, Counter[str]] = {m: Counter() for m in self.models}
        self._scored: set[str] = set()  # voices with an ok cell somewhere

    def add(self, image: ImageEntry) -> ImageComparison | None:
        """Count one image in; its own comparison, or None for a duplicate (counted once, with its first copy)."""
        if image.get("duplicate_of"):
            return None
        self.n_images += 1
        results = image.get("results", {})
        for m in self.models:
            cell = results.get(m)
            self._statuses[m][cell.get("status", "missing") if cell else "missing"] += 1
            seconds = timing.timed_seconds(cell) if cell else None
            if seconds is not None:
                self._times[m].append(seconds)
            used = timing.cell_usage(cell) if cell else None
            if used is not None:
                sums = self._usage.setdefault(m, [0, 0, 0])
                for i, n in enumerate(used):
                    sums[i] += n
        full = {
            m: cell_tags(ok, self.normalise, self.threshold)
            for m in self.models
            if (ok := results.get(m)) and ok.get("status") == "ok"
        }
        tops = {m: top(tags, self.top_k) for m, tags in full.items() if m in self.voices}
        self._scored.update(tops)
        entry = self._image(image, full, tops)
        for a, row in entry["pairwise"].items():
            for b, value in row.items():
                if value is not None:
                    self._pairs.setdefault((a, b), _Sum()).add(value)
        for m, tags in full.items():
            for tag, (score, estimated) in tags.items():
                self._confidence.setdefault(tag, {}).setdefault(m, _Sum()).add(score, estimated)
        return entry

    def _image(self, image: ImageEntry, full: dict[str, CellTags], tops: dict[str, CellTags]) -> ImageComparison:
        """One image's comparison; also adds the image's figures to the folder's stats."""
        models = self.voices
        consensus = []
        for tag in dict.fromkeys(t for m in models if m in tops for t in tops[m]):
            given = {m: tops[m][tag] for m in models if m in tops and tag in tops[m]}
            score = len(given) * sum(s for s, _ in given.values()) / len(given)
            sums = {m: _Sum(1, s, e) for m, (s, e) in given.items()}
            consensus.append(_consensus_item(tag, models, sums, score, 1))
            folder = self._stats.setdefault(tag, _TagStats())
            folder.images += 1
            folder.image_score_sum += score
            for m, (s, e) in given.items():
                folder.per_model.setdefault(m, _Sum()).add(s, e)
        consensus = _rank(consensus)
        pairwise = _pairwise(models, {m: set(t) for m, t in tops.items()})
        agreement, note = _agreement(models, pairwise, len(tops))
        shown = [c["tag"] for c in consensus]
        answered = [m for m in models if m in tops]
        k = consensus_cutoff(len(answered), self.consensus_min)
        common = [c["tag"] for c in consensus if c["n_models"] >= k]
        results = image.get("results", {})
        only = {
            c["tag"]: c["models"][0]
            for c in consensus
            if c["n_models"] == 1
            and len(answered) > 1
            and self._only_vocabulary(c["tag"], c["models"][0], answered, results)
        }
        return {
            "path": image["path"],
            "consensus": consensus,
            "agreement": _round(agreement),
            "agreement_note": note,
            "pairwise": {a: {b: _round(v) for b, v in row.items()} for a, row in pairwise.items()},
            "tags": {t: {m: full[m][t][0] for m in self.models if m in full and t in full[m]} for t in shown},
            "estimated": {
                t: [m for m in self.models if m in full and t in full[m] and full[m][t][1]]
                for t in shown
                if any(m in full and t in full[m] and full[m][t][1] for m in self.models)
            },
            "answered": answered,
            "consensus_min": k,
            "only_vocabulary": only,
            "summary": {
                "total_unique_tags": len(shown),
                "common_tags": common,
                "model_agreement_score": _round(agreement),
            },
        }

    def _kind(self, model: str) -> str | None:
        entry = self.entries.get(model)
        return entry.get("kind") if entry is not None else None

    # -- closed vocabularies ----------------------------------------------------------------------
    def vocabulary(self, model: str, cell: Cell | None) -> frozenset[str] | None:
        """A closed-vocabulary model's normalised label set (None for an open one, or when unknown yet):
        a tagger's raw scores cover its labels, a zero-shot model scores every term. Read from the
        model's first ok cell and kept (one set per model: memory does not grow with the images)."""
        if self._kind(model) not in CLOSED_KINDS:
            return None
        if model not in self._vocab:
            if not cell or cell.get("status") != "ok":
                return None
            scores = (cell.get("raw") or {}).get("scores")
            if isinstance(scores, dict):  # a tagger's raw output scores every label it has
                names = list(scores)
            elif self.entries[model].get("kind") == "zero-shot":  # every term is scored and listed
                names = [str(t.get("name", "")) for t in cell.get("tags") or []]
            else:  # a tagger that lists only its tags above its threshold
                return None
            self._vocab[model] = frozenset(filter(None, map(self.normalise, names)))
        return self._vocab[model]

    def _only_vocabulary(self, tag: str, model: str, answered: list[str], results: dict[str, Cell]) -> bool:
        """`tag` (given by `model` alone) is outside every other answering closed-vocabulary model's labels."""
        if self.vocabulary(model, results.get(model)) is None:
            return False
        others = [self.vocabulary(m, results.get(m)) for m in answered if m != model]
        closed = [v for v in others if v is not None]
        return bool(closed) and all(tag not in v for v in closed)

    def lookup(self, image: ImageEntry, tag: str) -> dict[str, dict[str, Any]]:
        """One tag across the models of one image (--show-confidence): per model the score it gave
        (any score, the threshold not applied) and whether it is estimated, or None with the reason:
        the cell's status, "not in vocabulary" (a closed-vocabulary model without that label) or
        "not in output"."""
        name = self.normalise(tag)
        out: dict[str, dict[str, Any]] = {}
        for m in self.models:
            cell = image.get("results", {}).get(m)
            kind = self._kind(m)
            if not cell or cell.get("status") != "ok":
                status = cell.get("status", "missing") if cell else "missing"
                out[m] = {"score": None, "reason": status, "kind": kind}
                continue
            tags = cell_tags(cell, self.normalise, None)
            if name in tags:
                score, estimated = tags[name]
                out[m] = {"score": score, "estimated": estimated, "kind": kind}
                continue
            vocab = self.vocabulary(m, cell)
            raw = (cell.get("raw") or {}).get("scores")
            below = vocab_scores(raw, self.normalise).get(name) if isinstance(raw, dict) else None
            if below is not None:  # a tagger's label scored under its own threshold: not in its tags
                out[m] = {"score": below, "estimated": False, "kind": kind, "below_model_threshold": True}
                continue
            reason = "not in vocabulary" if vocab is not None and name not in vocab else "not in output"
            out[m] = {"score": None, "reason": reason, "kind": kind}
        return out

    def result(self, images: dict[str, ImageComparison] | None = None) -> ComparisonResult:
        """The comparison (module docstring); `images`: the per-image entries to include (sha256 -> entry)."""
        voices, n_images = self.voices, self.n_images
        consensus = _rank(
            [
                _consensus_item(tag, voices, s.per_model, s.image_score_sum / n_images, s.images)
                for tag, s in self._stats.items()
            ]
        )
        pairwise = {
            a: {b: _round(self._pairs[(a, b)].mean if (a, b) in self._pairs else None) for b in voices} for a in voices
        }
        agreement, note = _agreement(voices, pairwise, len(self._scored))
        k = consensus_cutoff(len(self._scored), self.consensus_min)
        return {
            "definitions": definitions(self.top_k, self.threshold, self.consensus_min),
            "top_k": self.top_k,
            "threshold": self.threshold,
            "consensus_min": k,
            "models": self.models,
            "synthesis": self.synthesis,
            "synonyms": len(getattr(self.normalise, "synonyms", {})),
            "folder": {
                "n_images": n_images,
                "matrix": [_matrix_row(item, voices, self._stats[item["tag"]].per_model) for item in consensus],
                "consensus": consensus,
                "agreement": _round(agreement),
                "agreement_note": note,
                "pairwise": pairwise,
                "confidence": {
                    tag: {m: _cell_summary(v) for m, v in by_model.items()}
                    for tag, by_model in sorted(self._confidence.items())
                },
                "timing": {
                    m: timing.summarise(self.entries[m], self._times[m], self._usage.get(m)) for m in self.models
                },
                "status_counts": {m: dict(self._statuses[m].most_common()) for m in self.models},
                "answered": [m for m in voices if m in self._scored],
                "summary": {
                    "total_unique_tags": len(self._stats),
                    "common_tags": [c["tag"] for c in consensus if c["n_models"] >= k],
                    "model_agreement_score": _round(agreement),
                },
            },
            "images": images if images is not None else {},
        }


def compare(
    document: Body,
    top_k: int = 10,
    threshold: float | None = None,
    synonyms: dict[str, str] | None = None,
    normaliser: Callable[[str], str] | None = None,
    consensus_min: int | None = None,
) -> ComparisonResult:
    """The comparison of a whole document in memory (see the module docstring); the document is not modified."""
    models = [m.copy() for m in document.get("models", [])]
    for name in model_names(document)[len(models) :]:  # a model present only in the cells is never dropped
        models.append({"name": name})
    comparison = Comparison(models, top_k, threshold, normaliser or Normaliser(synonyms), consensus_min)
    per_image = {}
    for image in unique_images(document):
        first = image.copy()
        first.pop("duplicate_of", None)
        entry = comparison.add(first)
        if entry is not None:
            per_image[image["sha256"]] = entry
    return comparison.result(per_image)


def _cell_summary(scored: _Sum) -> TagSummary:
    return {"images": scored.n, "mean_score": _round(scored.mean), "estimated": scored.estimated}


def _matrix_row(item: ConsensusItem, models: list[str], per_model: dict[str, _Sum]) -> MatrixRow:
    return {
        "tag": item["tag"],
        "models": {m: _cell_summary(per_model[m]) for m in models if m in per_model},
        "n_models": item["n_models"],
        "score": item["score"],
        "estimated": item["estimated"],
    }
