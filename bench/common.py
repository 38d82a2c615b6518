"""What the decode and throughput benchmarks share (orchestrator venv): the real-size random WD14
model, built once offline and cached under .cache/bench/, and camera-size JPEGs made from samples/."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from PIL import Image

from orchestrator.models import envbuild
from orchestrator.paths import PROJECT_ROOT, cache_root

MEGAPIXELS = {12: (4000, 3000), 24: (6000, 4000), 50: (8660, 5774)}
SOURCES = ("rocket.jpg", "chelsea.png", "coffee.png", "brick.png")


def env_python(env: str) -> Path:
    return envbuild.build_env(env, log=lambda s: None).python


def real_wd14() -> Path:
    """model.onnx + selected_tags.csv of a real-size random WD ViT-B/16 tagger (cached; ~1 min to build)."""
    python = env_python("modern")
    sources = [PROJECT_ROOT / "bench" / "wd14_model.py", PROJECT_ROOT / "tests" / "tiny" / "wd14.py"]
    env_key = envbuild.env_key(envbuild.env_paths("modern")).encode()
    key = hashlib.sha256(b"".join(p.read_bytes() for p in sources) + env_key).hexdigest()[:12]
    out = cache_root() / "bench" / f"wd14-vit-b16-448-{key}"
    if (out / ".complete").exists():
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"building the real-size random WD14 model (once) into {out} ...", flush=True)
    subprocess.run(
        [str(python), "-m", "bench.wd14_model", str(tmp)],
        cwd=PROJECT_ROOT,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PROJECT_ROOT)},
    )
    (tmp / ".complete").write_text("")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def camera_jpeg(path: Path, megapixels: int, seed: int = 0) -> Path:
    """A camera-like JPEG: a sample photo upscaled to `megapixels`, sensor-like noise, quality 90."""
    size = MEGAPIXELS[megapixels]
    source = Image.open(PROJECT_ROOT / "samples" / SOURCES[seed % len(SOURCES)]).convert("RGB")
    photo = source.resize(size, Image.Resampling.BICUBIC)
    noise = Image.merge("RGB", [Image.effect_noise(size, 36 + 4 * ((seed + i) % 3)) for i in range(3)])
    Image.blend(photo, noise, 0.3).save(path, "JPEG", quality=90)
    return path
