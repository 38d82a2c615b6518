"""A trivial adapter for the REAL runner host (runners/host.py), run in the orchestrator's venv.

It misbehaves the way real libraries do: it prints to stdout at import and during inference
(the host must keep that off the protocol stream), and reports what the host decoded.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from runners.base import longest_side_need

print("fake adapter: a library printing to stdout at import time")
os.write(1, b"raw bytes written to fd 1 at import\n")

EXPECTED_SIDE = 64  # expected_decode_need's guess; load option `side` is the loaded model's own


class Adapter:
    def __init__(self) -> None:
        self.side = 0
        self.asked_ahead = 0  # expected_decode_need calls (the decode-ahead thread's)
        self.asked = threading.Event()

    def load(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Options: fail_load; side (a decode need: longest side); await_ahead_s (a slow load that
        lasts until a photo is being decoded ahead, at most that long: its notes say how many)."""
        print("fake adapter: loading (stdout)")
        options = spec["options"]
        if options.get("fail_load"):
            raise RuntimeError("asked to fail while loading")
        self.side = int(options.get("side", 0))
        notes = ["test adapter"]
        if options.get("await_ahead_s"):
            self.asked.wait(float(options["await_ahead_s"]))
            notes.append(f"photos being decoded during the load: {self.asked_ahead}")
        return {"device": "cpu", "dtype": "none", "model_version": "fake-adapter", "notes": notes}

    def decode_need(self, width: int, height: int, options: dict[str, Any]) -> tuple[int, int] | None:
        return longest_side_need(width, height, self.side) if self.side else None

    def expected_decode_need(self, width: int, height: int, options: dict[str, Any]) -> tuple[int, int]:
        self.asked_ahead += 1
        self.asked.set()
        return longest_side_need(width, height, EXPECTED_SIDE)

    def infer(self, images: list[Any], options: dict[str, Any]) -> list[dict[str, Any]]:
        print(f"fake adapter: infer on {len(images)} image(s)")
        time.sleep(float(options.get("sleep_s", 0)))  # a model computing
        os.write(1, b"\x00\x01 binary noise on fd 1\n")
        out = []
        for img in images:
            if options.get("raise_on") and img.name.endswith(options["raise_on"]):
                raise ValueError(f"adapter failure on {img.name}")
            w, h = img.pil.size
            out.append(
                {
                    "tags": [
                        {"name": f"mode {img.pil.mode}", "score": 1.0},
                        {"name": "landscape" if w > h else "portrait-or-square", "score": 0.5},
                    ],
                    "raw": {"size": [w, h], "rgb_extrema": [list(e) for e in img.rgb().getextrema()]},
                }
            )
        return out
