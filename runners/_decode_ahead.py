"""Decode the first photos while the model loads.

A model's load is mostly one busy core (an ONNX session's graph optimisation, reading weights),
and the photos the orchestrator sends meanwhile wait in the runner. One thread decodes them then,
at the size the adapter expects to need (`expected_decode_need`, runners/base.py), so that the
first inferences do not wait for their decodes. When the load is over it stops: during inference
the model keeps every core busy, and a decode beside it costs more than it saves (docs/performance.md).

Results never depend on it: `take` re-asks the loaded adapter's need for each photo and hands
out the early decode only when it was decoded at that same size; any other photo (not started,
another size, a bad image) is decoded by `infer` as it would be without this.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from runners._images import BadImage, DecodedImage, Need, asked_size, decode, decode_options

Early = tuple["tuple[int, int] | None", "DecodedImage | BadImage"]  # (size asked, image or why it is bad)
ExpectedNeed = Callable[[int, int, dict[str, Any]], "tuple[int, int] | None"]  # (width, height, options)
_Job = tuple["Future[Early]", dict[str, Any], dict[str, Any]]  # (its future, the image item, its options)


class DecodeAhead:
    """Fed by the request reader (`offer`), started and stopped around the load (`begin`, `end`);
    `take` hands a photo's early decode to `infer`."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._offered: list[tuple[dict[str, Any], dict[str, Any]]] = []  # before begin: (item, options)
        self._jobs: list[_Job] = []
        self._expected: ExpectedNeed | None = None
        self._over = False

    def offer(self, request: Any) -> None:
        """A request as it is read: the images of an infer request read before the load is over
        are decoded ahead (once `begin` says at what size)."""
        if not isinstance(request, dict) or request.get("op") != "infer":
            return
        options = request.get("options") or {}
        with self._wake:
            if self._over:
                return
            for item in request.get("images") or []:
                if isinstance(item, dict) and isinstance(item.get("data"), bytes):
                    if self._expected is None:
                        self._offered.append((item, options))
                    else:
                        self._queue(item, options)

    def begin(self, expected: ExpectedNeed) -> None:
        """The load starts: decode what was offered so far, and what comes until `end`."""
        with self._wake:
            if self._over:
                return
            self._expected = expected
            for item, options in self._offered:
                self._queue(item, options)
            self._offered.clear()
        threading.Thread(target=self._work, name="decode-ahead", daemon=True).start()

    def end(self) -> None:
        """The load is over (or failed): no decode starts any more; `infer` decodes the rest."""
        with self._wake:
            self._over = True
            for future, _, _ in self._jobs:
                future.cancel()
            self._jobs.clear()
            self._offered.clear()
            self._wake.notify()

    def _queue(self, item: dict[str, Any], options: dict[str, Any]) -> None:
        future: Future[Early] = Future()
        item["_early"] = future  # the item stays in its request; `take` pops this
        self._jobs.append((future, item, options))
        self._wake.notify()

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._jobs and not self._over:
                    self._wake.wait()
                if self._over:
                    return
                future, item, options = self._jobs.pop(0)
                expected = self._expected
                if not future.set_running_or_notify_cancel():
                    continue
            assert expected is not None
            future.set_result(_decode(item, expected, options))


def _decode(item: dict[str, Any], expected: ExpectedNeed, options: dict[str, Any]) -> Early:
    def need(width: int, height: int) -> tuple[int, int] | None:
        return expected(width, height, options)

    try:
        image = decode(item["id"], item["name"], item["data"], need=need, **decode_options(options))
    except BadImage as exc:
        return None, exc
    return asked_size(need, image.info["width"], image.info["height"]), image


def take(item: dict[str, Any], need: Need | None) -> DecodedImage | None:
    """The item's early decode if it was made at the size `need` asks for now; None: decode it
    now (never started, another size, a bad image, or the full-size path: `need` is None). Waits
    for a decode that is under way."""
    future: Future[Early] | None = item.pop("_early", None)
    if future is None or need is None or future.cancel():
        return None
    asked, image = future.result()
    if isinstance(image, BadImage):
        return None  # decoded again by infer: the cell gets the message it gets without this
    return image if asked == asked_size(need, image.info["width"], image.info["height"]) else None
