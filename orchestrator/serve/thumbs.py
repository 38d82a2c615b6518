"""Thumbnails made on demand in a small thread pool and kept in the user's cache folder.

A thumbnail is named by the image's sha256 and size: a moved or renamed photo keeps its thumbnail,
an edited one (new content, new sha256) gets a new one. Never written beside the photo: archives
are read, never written (read-only mounts work). Pillow decodes outside the GIL, so a few threads
make a page of thumbnails in parallel; at most one job per thumbnail at a time.
"""

from __future__ import annotations

import os
import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from orchestrator.report.thumbnails import thumbnail_jpeg

SIZES = (256, 1024)        # the grid's tiles and the photo view; nothing else is made
WORKERS = max(1, min(4, os.cpu_count() or 1))


class Thumbnails:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="mltag-thumb")
        self._jobs: dict[tuple[str, int], Future[tuple[bytes | None, str | None]]] = {}
        self._lock = threading.Lock()

    def file(self, sha256: str, size: int) -> Path:
        return self.folder / sha256[:2] / f"{sha256}-{size}.jpg"

    def get(self, sha256: str, source: Path, size: int) -> Future[tuple[bytes | None, str | None]]:
        """The thumbnail of the image `sha256` (stored at `source`): cached bytes, or a job that makes them."""
        cached = self.file(sha256, size)
        key = (sha256, size)
        with self._lock:
            job = self._jobs.get(key)
            if job is None:
                job = self._pool.submit(self._make, cached, source, size)
                self._jobs[key] = job
                job.add_done_callback(lambda _: self._forget(key))
        return job

    def _forget(self, key: tuple[str, int]) -> None:
        with self._lock:
            self._jobs.pop(key, None)

    def _make(self, cached: Path, source: Path, size: int) -> tuple[bytes | None, str | None]:
        try:
            return cached.read_bytes(), None
        except OSError:
            pass
        # draft 1: a 24 MP JPEG is decoded at 1/8 (750 x 500) for a 256 px tile, still downsampled after
        data, error = thumbnail_jpeg(source, size, optimize=False, draft=1.0)
        if data is not None:
            try:   # written whole then renamed: a reader never sees half a file
                cached.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".part")
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(tmp, cached)
            except OSError:
                pass   # a full or read-only cache: the thumbnail is still served, just made again next time
        return data, error

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
