"""Decode + preprocess cost per photo at 12, 24 and 50 MP, fast (JPEG draft to the model's need)
against exact (full decode, the reference preprocessing), and how far the fast path moves the scores.

A real-size random-weight WD14 (ViT-B/16 @ 448, 10,861 outputs; bench/wd14_model.py, built once
offline) scores both decodes of each photo; the table gives the max and mean absolute difference
over all 10,861 scores. It also prices decoding once for several models (each runner drafting at
its own need vs one draft at the largest need).

Formats (issue 20): the same 24 MP photo as JPEG, HEIC (pillow-heif), and DNG (tifffile, a Bayer
mosaic) with a full-size embedded JPEG preview (as most cameras write) and without one: decode +
preprocess for wd14 by each way a file can be decoded (fast: at the model's need, a RAW from its
preview when large enough; develop: LibRaw's develop, half size; exact: full size).

    .venv/bin/python bench/decode.py [--repeat N] [--formats-only]
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
from PIL import Image  # noqa: E402

from bench.common import MEGAPIXELS, camera_jpeg, env_python, real_wd14  # noqa: E402
from orchestrator.paths import PROJECT_ROOT  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--formats-only", action="store_true", help="only the formats table")
    args = parser.parse_args()
    model = real_wd14()
    print(f"machine: {os.cpu_count()} CPU cores, load average before {os.getloadavg()[0]:.2f}")
    if not args.formats_only:
        jpeg_table(model, args.repeat)
    formats_table(model, args.repeat)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


def formats_table(model: Path, repeat: int, megapixels: int = 24) -> None:
    from tests.formats import write_dng, write_heic

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        jpeg = camera_jpeg(folder / f"{megapixels}mp.jpg", megapixels)
        photo = Image.open(jpeg).convert("RGB")
        size = photo.size
        paths = [
            jpeg,
            write_heic(folder / f"{megapixels}mp.heic", photo, quality=80),
            write_dng(folder / f"{megapixels}mp-preview.dng", *size, preview=size, image=photo),
            write_dng(folder / f"{megapixels}mp-no-preview.dng", *size, image=photo),
        ]
        out = subprocess.run(
            [str(env_python("onnx")), "-m", "bench.in_env", "formats", str(model), str(repeat), *map(str, paths)],
            cwd=PROJECT_ROOT,
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        ).stdout
    rows = json.loads(out)
    print(f"formats: wd14 decode + preprocess per photo, {megapixels} MP (median of {repeat})")
    print(f"{'file':>20} {'MB':>5} {'way':>14} {'ms':>7} {'decoded from':>13} {'decoded size':>13}")
    for row in rows:
        source = row["decoded_from"] or row["format"]
        decoded = "x".join(map(str, row["decoded"])) + (f" 1/{row['draft_scale']}" if row["draft_scale"] > 1 else "")
        print(
            f"{row['path']:>20} {row['bytes'] / 1e6:5.1f} {row['way']:>14} {row['seconds'] * 1000:7.0f} "
            f"{source:>13} {decoded:>13}"
        )
    print(
        "fast: at wd14's need (a RAW: its embedded preview when at least that size, else a half-size develop); "
        "develop: --raw develop; exact: --exact-decode (a RAW without a full-size preview: a full develop)"
    )


def jpeg_table(model: Path, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = [camera_jpeg(Path(tmp) / f"{mp}mp.jpg", mp) for mp in MEGAPIXELS]
        out = subprocess.run(
            [str(env_python("onnx")), "-m", "bench.in_env", "decode", str(model), str(repeat), *map(str, paths)],
            cwd=PROJECT_ROOT,
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
        ).stdout
    rows = json.loads(out)
    print(f"wd14 decode + preprocess per photo (median of {repeat}; {os.cpu_count()} CPU cores)")
    print(
        f"{'photo':>6} {'MB':>5} {'exact ms':>9} {'fast ms':>8} {'speed-up':>9} {'fast decode':>12} "
        f"{'max |diff|':>11} {'mean |diff|':>12}"
    )
    for mp, row in zip(MEGAPIXELS, rows, strict=True):
        size = "x".join(map(str, row["fast_size"])) + f" 1/{row['draft_scale']}"
        print(
            f"{mp:>4}MP {row['bytes'] / 1e6:5.1f} {row['exact_s'] * 1000:9.0f} {row['fast_s'] * 1000:8.0f} "
            f"{row['exact_s'] / row['fast_s']:8.1f}x {size:>12} {row['max_abs']:11.5f} {row['mean_abs']:12.6f}"
        )
    print("diff: wd14 scores (probabilities) of the fast path minus the exact path, over all 10,861 outputs")
    print()
    print("decode once for several models? draft decode per model (ms), vs one draft at the largest need")
    names = list(rows[0]["per_model_decode_s"])
    print(
        f"{'photo':>6} " + " ".join(f"{n:>24}" for n in names) + f" {'sum':>7} {'once':>7} {'saved':>7}"
        f" {'pixels MB':>10}"
    )
    for mp, row in zip(MEGAPIXELS, rows, strict=True):
        each = row["per_model_decode_s"]
        total, once = sum(each.values()), max(each.values())
        print(
            f"{mp:>4}MP "
            + " ".join(f"{each[n] * 1000:24.0f}" for n in names)
            + f" {total * 1000:7.0f} {once * 1000:7.0f} {(total - once) * 1000:7.0f}"
            f" {row['shared_pixels_bytes'] / 1e6:10.1f}"
        )
    print(
        "once = the largest need's draft (what one shared decode would cost); pixels MB = its RGB pixels, "
        "what the orchestrator would send each runner instead of the file"
    )


if __name__ == "__main__":
    main()
