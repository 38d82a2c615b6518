"""Protocol cost at the photo sizes users have: how much of a request is transport + decoding?

Runs the REAL runner host (runners/host.py) with the no-model test adapter in the
orchestrator's venv, and sends noise JPEGs of ~0.3, ~5 and ~20 MB (urbex photos are 12-50 MP,
5-20 MB). Prints, per size: median round trip, the host's decode-to-reply share, MB/s over the
pipe, and round trip as a ratio of the smallest image's.

    .venv/bin/python bench/transport.py [--repeat N]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from orchestrator.paths import PROJECT_ROOT  # noqa: E402
from orchestrator.run.processes import RunnerProcess  # noqa: E402

SIZES = {"0.3 MP": (640, 480), "12 MP": (4000, 3000), "24 MP": (6000, 4000)}


def noise_jpeg(size: tuple[int, int]) -> bytes:
    bands = [Image.effect_noise(size, 64 + 16 * i) for i in range(3)]
    buf = io.BytesIO()
    Image.merge("RGB", bands).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def _decode_s(data: bytes) -> float:
    t0 = time.perf_counter()
    Image.open(io.BytesIO(data)).convert("RGB")
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runner = RunnerProcess.start(
            Path(sys.executable),
            "tests.fakes.adapter",
            Path(tmp) / "bench.log",
            extra_env={"PYTHONPATH": str(PROJECT_ROOT)},
        )
        try:
            runner.call("hello", 60)
            runner.call("load", 60, spec={"options": {}})
            rows = []
            for label, size in SIZES.items():
                data = noise_jpeg(size)
                rts, hosts = [], []
                for i in range(args.repeat):
                    t0 = time.perf_counter()
                    reply = runner.call("infer", 120, images=[{"id": str(i), "name": label, "data": data}], options={})
                    rts.append(time.perf_counter() - t0)
                    hosts.append(reply["batch_s"])
                decode = statistics.median(_decode_s(data) for _ in range(args.repeat))
                rows.append((label, len(data) / 1e6, statistics.median(rts), statistics.median(hosts), decode))
        finally:
            runner.stop()
    base = rows[0][2]
    print(
        f"{'image':>8} {'MB':>6} {'round trip ms':>14} {'adapter ms':>11} {'decode ms':>10} "
        f"{'transport ms':>13} {'transport share':>16} {'x smallest':>10}"
    )
    for label, mb, rt, host, decode in rows:
        transport = max(rt - host - decode, 0.0)
        print(
            f"{label:>8} {mb:6.1f} {rt * 1000:14.1f} {host * 1000:11.1f} {decode * 1000:10.1f} "
            f"{transport * 1000:13.1f} {transport / rt:16.2f} {rt / base:10.1f}"
        )
    print("decode = Pillow decode measured in this process; transport = the rest (framing, pipes, hashing none)")


if __name__ == "__main__":
    main()
