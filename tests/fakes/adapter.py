"""A trivial adapter for the REAL runner host (runners/host.py), run in the orchestrator's venv.

It misbehaves the way real libraries do: it prints to stdout at import and during inference
(the host must keep that off the protocol stream), and reports what the host decoded.
"""

from __future__ import annotations

import os
import time
from typing import Any

print("fake adapter: a library printing to stdout at import time")
os.write(1, b"raw bytes written to fd 1 at import\n")


class Adapter:
    def load(self, spec: dict[str, Any]) -> dict[str, Any]:
        print("fake adapter: loading (stdout)")
        if spec["options"].get("fail_load"):
            raise RuntimeError("asked to fail while loading")
        return {"device": "cpu", "dtype": "none", "model_version": "fake-adapter", "notes": ["test adapter"]}

    def infer(self, images: list[Any], options: dict[str, Any]) -> list[dict[str, Any]]:
        print(f"fake adapter: infer on {len(images)} image(s)")
        time.sleep(float(options.get("sleep_s", 0)))   # a model computing
        os.write(1, b"\x00\x01 binary noise on fd 1\n")
        out = []
        for img in images:
            if options.get("raise_on") and img.name.endswith(options["raise_on"]):
                raise ValueError(f"adapter failure on {img.name}")
            w, h = img.pil.size
            out.append({"tags": [{"name": f"mode {img.pil.mode}", "score": 1.0},
                                 {"name": "landscape" if w > h else "portrait-or-square", "score": 0.5}],
                        "raw": {"size": [w, h], "rgb_extrema": [list(e) for e in img.rgb().getextrema()]}})
        return out
