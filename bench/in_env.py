"""The benchmarks' measurements that need the model env (numpy, onnxruntime), run with the onnx
env's python as `python -m bench.in_env decode MODEL_DIR REPEAT IMAGE...` or
`python -m bench.in_env throughput MODEL_DIR fast|exact IMAGE...` or
`python -m bench.in_env formats MODEL_DIR REPEAT IMAGE...`; prints one JSON document.
Uses the real adapter (runners/adapters/wd14.py) and decoder (runners/_images.py)."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from runners._images import decode
from runners.adapters.wd14 import Adapter, _session_options, preprocess
from runners.base import shortest_side_need

# Other models' needs, to price decoding once for several models (CLIP ViT-L/14, Florence-2).
OTHER_NEEDS = {
    "clip (224 shortest side)": lambda w, h: shortest_side_need(w, h, 224),
    "florence2 (768 x 768)": lambda w, h: (768, 768),
}


def _adapter(model_dir: str) -> Adapter:
    adapter = Adapter()
    adapter.load(
        {
            "name": "wd14",
            "hub_id": "",
            "revision": "",
            "local_path": model_dir,
            "offline": True,
            "device": "cpu",
            "dtype": "auto",
            "cache_dir": "",
            "options": {},
        }
    )
    return adapter


def _median_s(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_decode(model_dir: str, paths: list[str], repeat: int) -> list[dict[str, Any]]:
    adapter = _adapter(model_dir)
    return [_decode_row(adapter, path, repeat) for path in paths]


def _decode_row(adapter: Adapter, path: str, repeat: int) -> dict[str, Any]:
    need = lambda w, h: adapter.decode_need(w, h, {})  # noqa: E731 - the host binds it the same way
    data = Path(path).read_bytes()
    exact_s = _median_s(lambda: preprocess(decode("x", path, data), adapter.size), repeat)
    fast_s = _median_s(lambda: preprocess(decode("x", path, data, need=need), adapter.size), repeat)
    exact, fast = decode("x", path, data), decode("x", path, data, need=need)
    scores = [adapter.infer([img], {})[0]["raw"]["scores"] for img in (exact, fast)]
    diffs = [abs(a - b) for a, b in zip(scores[0].values(), scores[1].values(), strict=True)]
    # Decode once for several models? Each runner's own draft vs one draft at the largest need.
    needs = {"wd14 (448 longest side)": need, **OTHER_NEEDS}
    each = {name: _median_s(lambda n=n: decode("x", path, data, need=n), repeat) for name, n in needs.items()}
    biggest = decode("x", path, data, need=OTHER_NEEDS["florence2 (768 x 768)"])
    return {
        "path": path,
        "bytes": len(data),
        "width": exact.info["width"],
        "height": exact.info["height"],
        "exact_s": exact_s,
        "fast_s": fast_s,
        "fast_size": list(fast.image().size),
        "draft_scale": fast.info["draft_scale"],
        "max_abs": max(diffs),
        "mean_abs": statistics.fmean(diffs),
        "per_model_decode_s": each,
        "shared_pixels_bytes": biggest.image().width * biggest.image().height * 3,
    }


def measure_throughput(model_dir: str, paths: list[str], exact: bool) -> dict[str, float]:
    """Wall seconds and CPU seconds (all threads) of (b) and (a)."""
    import onnxruntime as ort

    # (b) the model's own compute: session load + onnxruntime on pre-decoded, preprocessed input.
    sizer = _adapter(model_dir)
    arrays = [preprocess(decode("x", p, Path(p).read_bytes()), sizer.size)[None] for p in paths]
    del sizer
    t0, c0 = time.perf_counter(), time.process_time()
    session = ort.InferenceSession(
        str(Path(model_dir) / "model.onnx"), _session_options(), providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    for array in arrays:
        session.run(None, {name: array})
    compute_s, compute_cpu = time.perf_counter() - t0, time.process_time() - c0
    del session
    # (a) the same work in one process: load, then read, decode (as mltag does), preprocess, infer, per image.
    t0, c0 = time.perf_counter(), time.process_time()
    adapter = _adapter(model_dir)
    need = None if exact else (lambda w, h: adapter.decode_need(w, h, {}))
    for p in paths:
        adapter.infer([decode("x", p, Path(p).read_bytes(), need=need)], {})
    one_process_s, one_process_cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "compute_s": compute_s,
        "compute_cpu": compute_cpu,
        "one_process_s": one_process_s,
        "one_process_cpu": one_process_cpu,
    }


# How a file is decoded for wd14 in the formats table: (label, raw mode, at the model's need or full size).
FORMAT_WAYS = [
    ("fast", "auto", True),
    ("develop", "develop", True),
    ("exact", "auto", False),
    ("exact develop", "develop", False),
]


def measure_formats(model_dir: str, paths: list[str], repeat: int) -> list[dict[str, Any]]:
    """Per file and way of decoding (FORMAT_WAYS; the develop ways for RAW files only): decode +
    preprocess time, what the decode used and the size it gave."""
    adapter = _adapter(model_dir)
    need = lambda w, h: adapter.decode_need(w, h, {})  # noqa: E731 - the host binds it the same way
    rows = []
    for path in paths:
        data = Path(path).read_bytes()
        for label, raw, fast in FORMAT_WAYS:
            if raw == "develop" and not path.lower().endswith(".dng"):
                continue
            ask = need if fast else None
            img = decode("x", path, data, need=ask, raw=raw)
            seconds = _median_s(
                lambda path=path, data=data, ask=ask, raw=raw: preprocess(
                    decode("x", path, data, need=ask, raw=raw), adapter.size
                ),
                repeat,
            )
            rows.append(
                {
                    "path": Path(path).name,
                    "bytes": len(data),
                    "way": label,
                    "seconds": seconds,
                    "format": img.info["format"],
                    "decoded_from": img.info.get("decoded_from"),
                    "decoded": img.image().size,
                    "draft_scale": img.info.get("draft_scale", 1),
                }
            )
    return rows


def main(argv: list[str]) -> int:
    what, model_dir, *rest = argv[1:]
    if what == "decode":
        repeat, *paths = rest
        print(json.dumps(measure_decode(model_dir, paths, int(repeat))))
    elif what == "formats":
        repeat, *paths = rest
        print(json.dumps(measure_formats(model_dir, paths, int(repeat))))
    else:
        mode, *paths = rest
        print(json.dumps(measure_throughput(model_dir, paths, exact=mode == "exact")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
