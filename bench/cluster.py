"""The cluster path's cost: images per second for 1 and 2 local workers against the single-machine
path, the CPU each spends per image (driver, runners and Ray's processes: all on this machine),
and how many cells per second the driver's store sustains.

Runs the real CLI (`python -m orchestrator analyze`) with wd14 on its tiny random model
(tests/tiny/wd14.py) over N generated 1 MP JPEGs, store on:
  - single machine (no --cluster);
  - --cluster auto against a local Ray head started here, with --cluster-parallel 1 and 2.
Steady images/s comes from the store's cell times (first to last cell: start-up, connection and
model load left out); wall s includes everything. Then the store alone: ResultStore.put_cell in a
loop, as the driver writes cells, for a small cell (tiny wd14's) and a 10,861-score one (a real
WD v3 cell's size), each in its own transaction as in a run.

    .venv/bin/python bench/cluster.py [--photos 120] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from orchestrator.paths import PROJECT_ROOT  # noqa: E402
from tests.tiny_models import build  # noqa: E402


def photos(folder: Path, n: int) -> None:
    """n distinct 1 MP JPEGs (a sample photo with noise; bytes after the end marker make each file distinct)."""
    folder.mkdir()
    source = Image.open(PROJECT_ROOT / "samples" / "rocket.jpg").convert("RGB").resize((1280, 960))
    noise = Image.merge("RGB", [Image.effect_noise((1280, 960), 40 + 10 * i) for i in range(3)])
    buf = io.BytesIO()
    Image.blend(source, noise, 0.3).save(buf, "JPEG", quality=90)
    for i in range(n):
        (folder / f"{i:05d}.jpg").write_bytes(buf.getvalue() + b"%d" % i)


class CpuMeter:
    """CPU seconds used by this process's descendants while it runs: the CLI run with its runner
    (single machine), or the driver, Ray's processes (raylet, GCS, the host actors' workers) and the
    hosted runners. Sampled every 0.1 s per process (a process's own time, up to its last sample;
    Ray reaps its workers without accounting, so their children's times are not summed at exit)."""

    def __init__(self) -> None:
        self.first: dict[int, float] = {p.pid: t for p, t in self._sample()}
        self.last = dict(self.first)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def _sample() -> list[tuple[psutil.Process, float]]:
        out = []
        for proc in psutil.Process().children(recursive=True):
            try:
                t = proc.cpu_times()
                out.append((proc, t.user + t.system))
            except psutil.Error:  # gone meanwhile
                continue
        return out

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            for proc, t in self._sample():
                self.last[proc.pid] = t
                self.first.setdefault(proc.pid, 0.0)

    def seconds(self) -> float:
        self.stop.set()
        self.thread.join()
        return sum(t - self.first[pid] for pid, t in self.last.items())


def analyze(folder: Path, store: Path, extra: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(wall s, steady images/s, mean inference s) of one real CLI run."""
    args = [
        sys.executable,
        "-m",
        "orchestrator",
        "analyze",
        str(folder),
        "--models",
        "wd14",
        "--offline",
        f"--weights=wd14={build('wd14')}",
        "--format",
        "json",
        "--out",
        str(store.with_suffix(".json")),
        "--store",
        str(store),
        *extra,
    ]
    start = time.perf_counter()
    proc = subprocess.run(args, cwd=PROJECT_ROOT, capture_output=True, text=True, env={**os.environ, **env})
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"mltag failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    db = sqlite3.connect(store)
    times = sorted(t for (t,) in db.execute("SELECT time FROM cells"))
    [(mean_inference,)] = db.execute("SELECT avg(inference_s) FROM cells").fetchall()
    db.close()
    return wall, (len(times) - 1) / (times[-1] - times[0]), mean_inference


def store_rate(tmp: Path, scores: int, n: int) -> float:
    """Cells per second ResultStore.put_cell sustains, one transaction per cell (as the driver writes)."""
    from orchestrator.images import hash_file
    from orchestrator.store import CellMeta, ResultStore

    image = tmp / "one.png"
    Image.new("RGB", (8, 8)).save(image)
    ref = hash_file(image)
    store = ResultStore(tmp / f"rate-{scores}.sqlite")
    store.begin_run("bench", time.time(), {}, [])
    images = [ref.__class__(ref.path, f"{i:064x}", ref.size_bytes) for i in range(n)]
    store.record_images("bench", images)
    cell = {
        "status": "ok",
        "message": "",
        "inference_s": 0.01,
        "caption": None,
        "tags": [{"name": f"tag {i}", "score": 0.5, "category": "general"} for i in range(10)],
        "raw": {"scores": {f"tag_{i}": i / scores for i in range(scores)}},
    }
    meta = CellMeta(options_key="bench", kind="tagger", revision="r", device="cpu")
    start = time.perf_counter()
    for img in images:
        store.put_cell("bench", img.sha256, "wd14", cell, meta)
    rate = n / (time.perf_counter() - start)
    store.close()
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=3, help="runs of single machine and 1 worker, alternating")
    args = parser.parse_args()
    n, repeat = args.photos, args.repeat
    import ray

    load = os.getloadavg()[0]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"Ray {ray.__version__}; load average before: {load:.2f}"
    )
    print(f"model: wd14 on its tiny random ONNX (tests/tiny/wd14.py); {n} JPEGs of 1 MP; store on\n")
    with tempfile.TemporaryDirectory(prefix="mltag-cbench-") as tmp_name:
        tmp = Path(tmp_name)
        photos(tmp / "photos", n)
        env = {"MLTAG_HOME": str(tmp / "home"), "HF_HUB_OFFLINE": "1"}
        ray.init(
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            log_to_driver=False,
            namespace="mltag",
            object_store_memory=300 * 2**20,
            _temp_dir=tempfile.mkdtemp(prefix="mltag-ray-"),
        )
        address = ray.get_runtime_context().gcs_address
        single_run: tuple[str, list[str], dict[str, str]] = ("single machine", [], {})
        cluster_1 = ("cluster, 1 worker", ["--cluster", "auto", "--cluster-parallel", "1"], {"RAY_ADDRESS": address})
        cluster_2 = ("cluster, 2 workers", ["--cluster", "auto", "--cluster-parallel", "2"], {"RAY_ADDRESS": address})
        # single and 1 worker alternate, `repeat` times each: on a shared machine the load moves
        runs = [single_run, cluster_1] * repeat + [cluster_2]
        print(f"{'':>20} {'wall s':>7} {'img/s':>7} {'ms/img':>7} {'inference ms':>13} {'CPU ms/img':>11} {'load':>5}")
        rates: dict[str, list[float]] = {}
        for i, (label, extra, more) in enumerate(runs):
            meter = CpuMeter()
            wall, rate, inference = analyze(tmp / "photos", tmp / f"run{i}.sqlite", extra, {**env, **more})
            cpu = meter.seconds()
            rates.setdefault(label, []).append(rate)
            print(
                f"{label:>20} {wall:7.1f} {rate:7.1f} {1000 / rate:7.1f} {1000 * inference:13.1f} "
                f"{1000 * cpu / n:11.1f} {os.getloadavg()[0]:5.2f}"
            )
        ratios = [c / s for s, c in zip(rates["single machine"], rates["cluster, 1 worker"], strict=True)]
        print(
            f"cluster, 1 worker / single machine, steady img/s, run by run: "
            f"{', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f}"
        )
        ray.shutdown()
        print("\ndriver's store (ResultStore.put_cell, one transaction per cell):")
        for scores, count in ((20, 3000), (10_861, 300)):
            print(f"  {scores:>6} raw scores per cell: {store_rate(tmp, scores, count):8.0f} cells/s")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
