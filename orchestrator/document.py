"""The result document (schemas/result.schema.json): its one shape.

A document is a header (versions, run id, times, options), the models' entries, and the images,
each with every model's cell. Images are never held together: `Results.images()` streams them
(from the results store, orchestrator/store/documents.py: `from_run`, `from_store`), so every
output (table, JSON, CSV, HTML, the comparison) costs the same memory for ten photos or a hundred
thousand. This module is the shape only: it imports nothing of the layers above it.

The TypedDicts below are the schema's shapes as the code builds and reads them: what the schema
requires is Required here, except where a note says which code leaves a key out (mypy checks the
field names everywhere; the JSON Schema, tested, checks the output documents).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, Required, TypedDict, cast

from orchestrator import __version__

# 2: cells carry tag_count, images and the comparison's folder a summary (total_unique_tags, common_tags,
# model_agreement_score). Version-1 documents and every store still read: tag_count is added on reading.
SCHEMA_VERSION = 2


# -- one model's result for one image (schema: $defs/cell) --------------------------------------------


class Tag(TypedDict):
    name: str
    score: float
    category: NotRequired[str]
    estimated: NotRequired[bool]  # the score is an estimate (a caption's tags), not a model probability


class CellError(TypedDict):
    type: str
    message: str
    traceback: str


class Cell(TypedDict, total=False):
    """A cell as documents show it (compare/captags.finish_cell adds a captioner's tags and tag_count);
    the store keeps what the runner gave. `status`: a schemas.status.CellStatus value."""

    status: Required[str]
    message: str
    fix: str
    tags: list[Tag]
    tag_count: int
    caption: str | None
    raw: dict[str, Any]  # the model's own output, as given
    image: dict[str, Any]  # the photo as decoded (size, format, a RAW's develop)
    inference_s: float | None
    batch_size: int
    error: CellError
    stderr_tail: str
    attempts: list[dict[str, Any]]  # earlier failed tries: their status, attempt number, message


# -- one image: its file and every model's cell (schema: $defs/image) ------------------------------


class Summary(TypedDict):
    total_unique_tags: int
    common_tags: list[str]
    model_agreement_score: float | None


class ImageRow(TypedDict):
    """An image as the store or a run lists it, before its cells are read (store/documents.py adds them).
    size_bytes: every document's images carry it (the schema requires it); the evaluation's in-memory
    entries of labelled photos leave it out (store/documents.evaluate_store)."""

    path: str
    sha256: str
    size_bytes: NotRequired[int]
    path_bytes: NotRequired[str]  # base64 of a name that is not UTF-8
    duplicate_of: NotRequired[str]
    seen_as: NotRequired[list[str]]


class ImageEntry(ImageRow):
    results: dict[str, Cell]  # model name -> its cell
    summary: NotRequired[Summary]


# -- one model (schema: $defs/model) ----------------------------------------------------------------


class ModelEntry(TypedDict, total=False):
    """A models[] entry. The schema requires kind, adapter, env, hub_id, revision, status, device, load_s,
    warmup_s and notes too: the run's entries (run/pipeline.py) and the store's (store/db.py) give them
    all; one made up for a model found only in the cells (compare.comparison.compare) has its name alone."""

    name: Required[str]
    kind: str  # tagger, zero-shot, captioner, judge
    adapter: str
    env: str
    hub_id: str
    revision: str
    weights: str | None
    remote_code: bool
    status: str  # ok, failed, skipped
    message: str
    fix: str
    device: str | None
    dtype: str | None
    model_version: str | None
    load_s: float | None
    warmup_s: float | None
    memory_mb: float | None
    notes: list[str]
    reload_s: list[float]
    crashes: int
    timeouts: int
    log: str | None
    runner: dict[str, Any] | None


# -- the comparison (schema: $defs/comparison; compare/comparison.py builds it) ----------------------


class TagSummary(TypedDict):
    images: int
    mean_score: float | None
    estimated: NotRequired[bool]


class ConsensusItem(TypedDict):
    tag: str
    n_models: int
    mean_confidence: float | None
    score: float
    images: int
    models: list[str]
    estimated: NotRequired[bool]


class MatrixRow(TypedDict):
    tag: str
    models: dict[str, TagSummary]
    n_models: int
    score: float
    estimated: NotRequired[bool]


Pairwise = dict[str, dict[str, float | None]]  # model x model mean Jaccard; None where undefined


class ModelTiming(TypedDict):
    load_s: float | None
    warmup_s: float | None
    mean_s: float | None
    p50_s: float | None
    p95_s: float | None
    images_per_s: float | None
    n: int
    inference_total_s: NotRequired[float]
    total_s: NotRequired[float]
    prompt_tokens: NotRequired[int]
    completion_tokens: NotRequired[int]
    retries: NotRequired[int]


class ImageComparison(TypedDict):
    """One image's figures (comparison.images[sha256]; `Comparison.add` returns it)."""

    consensus: list[ConsensusItem]
    agreement: float | None
    pairwise: Pairwise
    tags: dict[str, dict[str, float]]  # normalised tag -> model -> score
    path: NotRequired[str]
    agreement_note: NotRequired[str | None]
    estimated: NotRequired[dict[str, list[str]]]  # normalised tag -> models whose score is estimated
    answered: NotRequired[list[str]]
    consensus_min: NotRequired[int]
    only_vocabulary: NotRequired[dict[str, str]]
    summary: NotRequired[Summary]


class FolderComparison(TypedDict):
    matrix: list[MatrixRow]
    consensus: list[ConsensusItem]
    agreement: float | None
    pairwise: Pairwise
    timing: dict[str, ModelTiming]
    status_counts: dict[str, dict[str, int]]
    n_images: NotRequired[int]
    agreement_note: NotRequired[str | None]
    confidence: NotRequired[dict[str, dict[str, TagSummary]]]  # tag -> model -> summary
    answered: NotRequired[list[str]]
    summary: NotRequired[Summary]


class ComparisonResult(TypedDict):
    """The document's `comparison` (compare.comparison.Comparison.result)."""

    definitions: dict[str, str]
    top_k: int
    threshold: float | None
    models: list[str]
    folder: FolderComparison
    images: dict[str, ImageComparison]  # sha256 -> its figures
    consensus_min: NotRequired[int]
    synthesis: NotRequired[list[str]]
    synonyms: NotRequired[int]


# -- the document ------------------------------------------------------------------------------------


class KeptFailure(TypedDict):
    """A failed cell of this run that the store did not take (it keeps the photo's earlier done cell)."""

    model: str
    path: str
    sha256: str
    status: str
    message: str


class Header(TypedDict):
    schema_version: int
    mltag_version: str
    run_id: str
    started: str
    duration_s: float
    options: dict[str, Any]
    failures_kept: NotRequired[list[KeptFailure]]


class Body(TypedDict):
    """What the comparison and the evaluation read of a document held in memory: a Document is one."""

    models: list[ModelEntry]
    images: list[ImageEntry]


class Document(Header):
    models: list[ModelEntry]
    images: list[ImageEntry]
    comparison: NotRequired[ComparisonResult]


def iso_time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


def header(run_id: str, started: float, finished: float, options: dict[str, Any]) -> Header:
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

    head: Header
    models: list[ModelEntry]
    images: Callable[[], Iterator[ImageEntry]]

    @classmethod
    def of(cls, document: Mapping[str, Any]) -> Results:
        """A document already in memory (a saved JSON, a test's) as Results: its header keys as written."""
        head = cast(Header, {k: v for k, v in document.items() if k not in ("models", "images", "comparison")})
        return cls(head, list(document.get("models", [])), lambda: iter(document.get("images", [])))

    @property
    def options(self) -> dict[str, Any]:
        return self.head.get("options") or {}

    def document(self) -> Document:
        """The whole document in memory: for small documents only (health checks, tests)."""
        # mypy wants every optional key of the target (here `comparison`) named in a `**` item: cast
        return cast(Document, {**self.head, "models": self.models, "images": list(self.images())})
