"""Thumbnails made on demand in a small thread pool and kept in the user's cache folder, shared with
the HTML report (report/thumbnails.py cached_thumbnail: named by sha256 and size, never written beside
the photo). Pillow decodes outside the GIL, so a few threads make a page of thumbnails in parallel; at
most one job per thumbnail at a time.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from orchestrator.report.thumbnails import cache_file, cached_thumbnail

SIZES = (256, 1024)  # the grid's tiles and the photo view; nothing else is made
WORKERS = max(1, min(4, os.cpu_count() or 1))


class Thumbnails:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="mltag-thumb")
        self._jobs: dict[tuple[str, int], Future[tuple[bytes | None, str | None]]] = {}
        self._lock = threading.Lock()

    def file(self, sha256: str, size: int) -> Path:
        return cache_file(self.folder, sha256, size)

    def get(self, sha256: str, source: Path, size: int) -> Future[tuple[bytes | None, str | None]]:
        """The thumbnail of the image `sha256` (stored at `source`): cached bytes, or a job that makes them."""
        key = (sha256, size)
        with self._lock:
            job = self._jobs.get(key)
            new = job is None
            if job is None:
                job = self._jobs[key] = self._pool.submit(cached_thumbnail, self.folder, sha256, source, size)
        if new:
            # Outside the lock: a job already done (a cached thumbnail) runs its callback right here,
            # and _forget takes the lock (under it, that was a deadlock that froze the whole app).
            job.add_done_callback(lambda _: self._forget(key))
        return job

    def _forget(self, key: tuple[str, int]) -> None:
        with self._lock:
            self._jobs.pop(key, None)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
