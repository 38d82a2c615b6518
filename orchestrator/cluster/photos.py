"""Each photo goes into Ray's object store once, for every model that analyses it.

A model's supervisor sends `{"data": ObjectRef}` instead of the file's bytes (job.payload); the
host actor receives the bytes as one of its call's own arguments (transport.py), which Ray fetches
to the node before the call runs, while the runner still computes the photo before. Ray copies an
object to a node once, however many of that node's actors read it: a photo leaves the driver's
disk once and crosses the network once per node, not once per model.

A photo is freed when every model of the run is done with it (its cell stored), so what is held
follows the models' progress, not the number of photos. Models run at their own speed, so one can
be far ahead of another: at most `limit` bytes are held, the oldest photos are let go beyond
that, and a photo let go is put again when a slower model reaches it (counted in `puts`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from orchestrator.images import ImageRef

LIMIT_BYTES = 256 * 2**20  # photos held in the object store at most (camera JPEGs: ~50 of them)


class PhotoShelf:
    """The run's photos in Ray's object store, each put once and held while a model still needs it."""

    def __init__(self, ray: Any, models: Iterable[str], limit: int = LIMIT_BYTES) -> None:
        self.ray = ray
        self.limit = limit
        self.lock = threading.Lock()
        self.unsaid = set(models)  # models that have not said which photos they send
        self.wants: dict[str, set[str]] = {}  # model -> ids of the photos it has still to finish
        self.held: OrderedDict[str, tuple[Any, int]] = OrderedDict()  # id -> (ObjectRef, size), oldest first
        self.held_bytes = 0
        self.puts = 0  # ray.put calls (a photo let go early and put again counts twice)
        self.most_held = 0  # the most bytes held at once

    def expect(self, model: str, images: Iterable[ImageRef]) -> None:
        """`model` will send each of `images` (a model's pending photos, before its pool starts)."""
        with self.lock:
            self.wants[model] = {image.id for image in images}
            self.unsaid.discard(model)
            self._sweep()

    def payload(self, image: ImageRef) -> dict[str, Any]:
        """The infer payload of `image`: its bytes' ObjectRef, put now unless held already. The file
        is read outside the lock (an OSError is the supervisor's `skipped` cell, as on one machine)."""
        with self.lock:
            held = self.held.get(image.id)
        if held is None:
            data = image.read()
            with self.lock:
                held = self.held.get(image.id)
                if held is None:  # not put by another model meanwhile
                    held = self.held[image.id] = (self.ray.put(data), len(data))
                    self.puts += 1
                    self.held_bytes += len(data)
                    self._trim()
                    self.most_held = max(self.most_held, self.held_bytes)
        return {"data": held[0]}

    def done(self, model: str, image: ImageRef) -> None:
        """`model` stored its cell for `image` (retries come before): freed when no model needs it."""
        with self.lock:
            wants = self.wants.get(model)
            if wants is not None:
                wants.discard(image.id)
            if image.id in self.held and not self._wanted(image.id):
                self._drop(image.id)

    def leave(self, model: str) -> None:
        """`model` is finished (or never ran, or sends its own payload): it needs no photo any more."""
        with self.lock:
            self.wants.pop(model, None)
            self.unsaid.discard(model)
            self._sweep()

    def close(self) -> None:
        """The run is over: every photo still held is let go."""
        with self.lock:
            self.unsaid.clear()
            self.wants.clear()
            self._sweep()

    def _wanted(self, photo: str) -> bool:
        return bool(self.unsaid) or any(photo in wants for wants in self.wants.values())

    def _drop(self, photo: str) -> None:
        """The shelf lets the photo go: Ray frees it once no call in flight holds it either."""
        _, size = self.held.pop(photo)
        self.held_bytes -= size

    def _sweep(self) -> None:
        if not self.unsaid:
            for photo in [p for p in self.held if not self._wanted(p)]:
                self._drop(photo)

    def _trim(self) -> None:
        """Over the limit: the oldest photos go (never the one just put, the newest)."""
        while self.held_bytes > self.limit and len(self.held) > 1:
            self._drop(next(iter(self.held)))
