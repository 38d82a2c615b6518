"""Decode + preprocess cost per photo at 12, 24 and 50 MP, fast (JPEG draft to the model's need)
against exact (full decode, the reference preprocessing), and how far the fast path moves the scores.

A real-size random-weight WD14 (ViT-B/16 @ 448, 10,861 outputs; bench/wd14_model.py, built once
offline) scores both decodes of each photo; the table gives the max and mean absolute difference
over all 10,861 scores. It also prices decoding once for several models (each runner drafting at
its own need vs one draft at the largest need).

    .venv/bin/python bench/decode.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import MEGAPIXELS, camera_jpeg, env_python, real_wd14  # noqa: E402
from orchestrator.paths import PROJECT_ROOT  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    model = real_wd14()
    with tempfile.TemporaryDirectory() as tmp:
        paths = [camera_jpeg(Path(tmp) / f"{mp}mp.jpg", mp) for mp in MEGAPIXELS]
        out = subprocess.run([str(env_python("onnx")), "-m", "bench.in_env", "decode", str(model), str(args.repeat),
                              *map(str, paths)], cwd=PROJECT_ROOT, check=True, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}).stdout
    rows = json.loads(out)
    print(f"wd14 decode + preprocess per photo (median of {args.repeat}; {os.cpu_count()} CPU cores)")
    print(f"{'photo':>6} {'MB':>5} {'exact ms':>9} {'fast ms':>8} {'speed-up':>9} {'fast decode':>12} "
          f"{'max |diff|':>11} {'mean |diff|':>12}")
    for mp, row in zip(MEGAPIXELS, rows, strict=True):
        size = "x".join(map(str, row["fast_size"])) + f" 1/{row['draft_scale']}"
        print(f"{mp:>4}MP {row['bytes'] / 1e6:5.1f} {row['exact_s'] * 1000:9.0f} {row['fast_s'] * 1000:8.0f} "
              f"{row['exact_s'] / row['fast_s']:8.1f}x {size:>12} {row['max_abs']:11.5f} {row['mean_abs']:12.6f}")
    print("diff: wd14 scores (probabilities) of the fast path minus the exact path, over all 10,861 outputs")
    print()
    print("decode once for several models? draft decode per model (ms), vs one draft at the largest need")
    names = list(rows[0]["per_model_decode_s"])
    print(f"{'photo':>6} " + " ".join(f"{n:>24}" for n in names) + f" {'sum':>7} {'once':>7} {'saved':>7}"
          f" {'pixels MB':>10}")
    for mp, row in zip(MEGAPIXELS, rows, strict=True):
        each = row["per_model_decode_s"]
        total, once = sum(each.values()), max(each.values())
        print(f"{mp:>4}MP " + " ".join(f"{each[n] * 1000:24.0f}" for n in names)
              + f" {total * 1000:7.0f} {once * 1000:7.0f} {(total - once) * 1000:7.0f}"
              f" {row['shared_pixels_bytes'] / 1e6:10.1f}")
    print("once = the largest need's draft (what one shared decode would cost); pixels MB = its RGB pixels, "
          "what the orchestrator would send each runner instead of the file")


if __name__ == "__main__":
    main()
