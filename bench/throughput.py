"""wd14 throughput on camera-size JPEGs: mltag (the real CLI, --no-store) against (a) the same work
in one process and (b) the model's own compute on pre-decoded input (session load + onnxruntime),
all in one run, on a real-size random-weight WD14 (ViT-B/16 @ 448, 10,861 outputs, built offline
by bench/wd14_model.py and cached under .cache/bench/). Batch 1, CPU. Goal: mltag <= 1.15x (b).

Each measurement runs --rounds times, interleaved; the table gives the best round of each (the
least disturbed by other load on the machine), the median, and CPU seconds (all threads and
processes), which other load on a shared machine disturbs less than wall time. mltag is timed as
a user runs it: `mltag analyze` with its table written to a file (--format json would add the
serialisation of all 10,861 scores per photo, the output's cost rather than the pipeline's).

    .venv/bin/python bench/throughput.py [--rounds N] [--exact-decode]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import camera_jpeg, env_python, real_wd14  # noqa: E402
from orchestrator.paths import PROJECT_ROOT  # noqa: E402

GOAL = 1.15
PHOTOS = [24] * 8 + [12] * 8  # megapixels: 16 photos, 8 of them 24 MP


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the CLI and its runner, once reaped
    return usage.ru_utime + usage.ru_stime


def _mltag(folder: Path, model: Path, out: Path, exact: bool) -> tuple[float, float]:
    cmd = [
        str(Path(sys.executable).parent / "mltag"),
        "analyze",
        str(folder),
        "--models",
        "wd14",
        "--weights",
        f"wd14={model}",
        "--offline",
        "--no-store",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    t0, c0 = time.perf_counter(), _children_cpu()
    proc = subprocess.run(
        cmd + (["--exact-decode"] if exact else []),
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    elapsed, cpu = time.perf_counter() - t0, _children_cpu() - c0
    if proc.returncode != 0:  # exit 0: every cell ok or no_tags
        raise SystemExit(f"mltag failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--exact-decode", action="store_true", help="time mltag's exact (full-size) decode")
    args = parser.parse_args()
    model = real_wd14()
    python = env_python("onnx")
    load_before = os.getloadavg()[0]
    times: dict[str, list[float]] = {"mltag": [], "one process": [], "model compute": []}
    cpu: dict[str, list[float]] = {key: [] for key in times}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        folder.mkdir()
        paths = [camera_jpeg(folder / f"photo{i:02d}-{mp}mp.jpg", mp, seed=i) for i, mp in enumerate(PHOTOS)]
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
        for _ in range(args.rounds):
            inproc = json.loads(
                subprocess.run(
                    [
                        str(python),
                        "-m",
                        "bench.in_env",
                        "throughput",
                        str(model),
                        "exact" if args.exact_decode else "fast",
                        *map(str, paths),
                    ],
                    cwd=PROJECT_ROOT,
                    check=True,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
                ).stdout
            )
            times["model compute"].append(inproc["compute_s"])
            cpu["model compute"].append(inproc["compute_cpu"])
            times["one process"].append(inproc["one_process_s"])
            cpu["one process"].append(inproc["one_process_cpu"])
            wall, used = _mltag(folder, model, Path(tmp) / "out.txt", args.exact_decode)
            times["mltag"].append(wall)
            cpu["mltag"].append(used)
    base = min(times["model compute"])
    mode = "exact decode" if args.exact_decode else "fast decode"
    print(
        f"wd14 (real-size random ViT-B/16 @ 448) on {len(paths)} photos ({PHOTOS.count(24)} x 24 MP, "
        f"{PHOTOS.count(12)} x 12 MP JPEG q90, {megabytes:.0f} MB), batch 1, CPU, {os.cpu_count()} cores, "
        f"{args.rounds} rounds, mltag {mode}"
    )
    print(f"{'':>38} {'best s':>7} {'median s':>9} {'x (b)':>6} {'s/photo':>8} {'CPU s':>6} {'CPU x (b)':>9}")
    labels = {
        "mltag": "mltag analyze --no-store (real CLI)",
        "one process": "(a) same work in one process",
        "model compute": "(b) model compute, pre-decoded input",
    }
    for key, label in labels.items():
        best = min(times[key])
        print(
            f"{label:>38} {best:7.2f} {statistics.median(times[key]):9.2f} {best / base:6.2f} "
            f"{best / len(paths):8.3f} {min(cpu[key]):6.1f} {min(cpu[key]) / min(cpu['model compute']):9.2f}"
        )
    print(
        f"load average (1 min) before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f} on "
        f"{os.cpu_count()} cores (above the core count, other work shared the CPUs: compare CPU s, or rerun)"
    )
    ratio = min(times["mltag"]) / base
    print(f"mltag / model compute = {ratio:.2f}x (goal <= {GOAL}x): {'met' if ratio <= GOAL else 'NOT met'}")


if __name__ == "__main__":
    main()
