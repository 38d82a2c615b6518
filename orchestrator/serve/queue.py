"""'Label next' for the app: the store's queue (orchestrator/store/documents.py queue_from_store: the
nextlabel.py queue over a bounded, reproducible sample of the unlabelled photos, reading the leading
models' cells only), computed on a background thread and again after every REFRESH photos marked
done, as the leading models change.

Until the first queue is ready, 'label next' takes the unlabelled photo the models disagree on most
from the browse index (its disagreement order), so the button never waits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from orchestrator.compare.nextlabel import best_thresholds, leading_models
from orchestrator.serve.index import BrowseIndex, Filters
from orchestrator.store import ResultStore
from orchestrator.store.documents import evaluate_store, model_entries, queue_from_store

QUEUE_LENGTH = 200
REFRESH = 10  # photos marked done before the queue is computed again


class LabelQueue:
    def __init__(
        self, store: ResultStore, under: list[Path] | None, normalise: Callable[[str], str], index: BrowseIndex
    ) -> None:
        self.store, self.under, self.normalise, self.index = store, under, normalise, index
        self._queue: list[str] | None = None
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._done_since = 0

    def start(self) -> None:
        """Compute the queue in the background (once at a time)."""
        with self._lock:
            if self._worker is not None and self._worker.is_alive():
                return
            self._done_since = 0
            self._worker = threading.Thread(target=self._compute, name="mltag-label-queue", daemon=True)
            self._worker.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the queue being computed (tests, the bench); True when one is ready."""
        worker = self._worker
        if worker is not None:
            worker.join(timeout)
        return self._queue is not None

    def _compute(self) -> None:
        evaluation = evaluate_store(self.store, self.normalise, self.under, resamples=0)
        entries = model_entries(self.store, self.store.models(), self.under)
        leaders = leading_models(evaluation if evaluation["labelled"] else None, [e["name"] for e in entries])
        queue = queue_from_store(
            self.store,
            self.normalise,
            leaders,
            best_thresholds(evaluation),
            self.under,
            limit=QUEUE_LENGTH,
            models=entries,
        )
        with self._lock:
            self._queue = [c.sha256 for c in queue]

    def marked_done(self) -> None:
        with self._lock:
            self._done_since += 1
            due = self._done_since >= REFRESH
        if due:
            self.start()

    def next(self, after: str | None) -> str | None:
        """The photo to label next (not done, not `after`); None when every photo is done."""
        with self._lock:
            queue = list(self._queue) if self._queue is not None else None
        if queue is not None:
            done = self.index.done_among(queue)
            for sha in queue:
                if sha != after and sha not in done:
                    return sha
            self.start()  # the queue is used up: compute the next one, meanwhile the index's order
        page = self.index.page(Filters(labelled="not-done", sort="disagreement"), None, 2, count=False)
        for item in page["items"]:
            if item["sha256"] != after:
                return str(item["sha256"])
        return None
