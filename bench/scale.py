"""Archive scale: does the orchestrator's memory stay flat as the folder grows, and what does a photo cost it?

Runs the real CLI (`python -m orchestrator analyze`) over N small generated photos with wd14 on a
tiny random WD14-architecture ONNX that has the real WD v3 tag count (10,861 raw scores per
cell, tests/tiny/wd14_wide.py), the results store on and JSON written to a file, for each N in
--counts. Prints per N: wall time, images per second, the orchestrator's per-image overhead
(wall time minus the model's own inference seconds, per image), the orchestrator's peak RSS
(VmHWM, sampled), the ratio of that peak to the smallest N's, and the store's size per cell.

    .venv/bin/python bench/scale.py [--counts 1000,10000]

The photos are tiny on purpose: what grows with N is the orchestrator's bookkeeping, not decoding.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.integration.helpers import peak_rss_mb  # noqa: E402
from tests.tiny_models import build  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="1000,10000", help="comma-separated photo counts")
    counts = [int(c) for c in parser.parse_args().counts.split(",")]
    weights = build("wd14_wide")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("model: wd14 on a tiny random ONNX with 10,861 outputs (tests/tiny/wd14_wide.py); store on; JSON to a file\n")
    print(f"{'photos':>7} {'wall s':>8} {'img/s':>7} {'overhead ms/img':>16} {'peak RSS MB':>12} "
          f"{'vs first':>9} {'store KB/cell':>14}")
    first = None
    with tempfile.TemporaryDirectory(prefix="mltag-scale-") as tmp:
        for n in counts:
            folder = Path(tmp) / f"photos-{n}"
            folder.mkdir()
            for i in range(n):
                Image.new("RGB", (48, 32), (i % 256, (i // 256) % 256, (i * 13) % 256)).save(folder / f"{i:06d}.png")
            store, out = Path(tmp) / f"{n}.sqlite", Path(tmp) / f"{n}.json"
            env = {"MLTAG_HOME": str(Path(tmp) / "home"), "HF_HUB_OFFLINE": "1"}
            peak, wall, proc = peak_rss_mb(["analyze", str(folder), "--models", "wd14", "--weights", f"wd14={weights}",
                                            "--offline", "--format", "json", "--out", str(out), "--store", str(store)],
                                           env)
            if proc.returncode != 0:
                print(f"analyze failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
                return 1
            # From the store, not the output: the JSON of 10,000 photos is ~4.6 GB, never to be loaded whole.
            with sqlite3.connect(store) as db:
                inference = db.execute("SELECT total(inference_s) FROM cells").fetchone()[0]
                load = json.loads(db.execute("SELECT entry FROM run_models").fetchone()[0]).get("load_s") or 0.0
            first = first or peak
            overhead_ms = (wall - inference - load) / n * 1000
            size_kb = store.stat().st_size / 1024 / n
            print(f"{n:>7} {wall:>8.1f} {n / wall:>7.1f} {overhead_ms:>16.1f} {peak:>12.1f} {peak / first:>8.2f}x "
                  f"{size_kb:>14.1f}   (load average {os.getloadavg()[0]:.1f})", flush=True)
            for p in folder.iterdir():
                p.unlink()
            store.unlink()
            out.unlink()
    print("\noverhead: wall time minus the model's load and its inference seconds, per photo (process start, "
          "hashing, transport, decoding, store writes, JSON output)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
