"""The adapter interface, and helpers every adapter shares (device choice, weights, memory).

An adapter module defines `class Adapter` with:
    load(spec) -> LoadResult
    infer(images, options) -> list[ImageResult]   (one per image, same order)
The host (runners/host.py) adds ids, timings and memory figures; adapters only model.
Torch is imported lazily here: the ONNX env has no torch.

Decode size, declared in one place per adapter (optional):
    decode_need(width, height, options) -> (min_width, min_height) | None
Given an image's ORIGINAL upright size and the infer options, the smallest upright size the
adapter's preprocessing can start from and lose nothing it keeps (WD14: longest side = its input
side; CLIP: shortest side = 224; a fixed-size processor: its width and height; Qwen: its pixel
budget's target). The host calls it after load and decodes JPEGs by DCT scaling to the smallest
1/2, 1/4, 1/8 scale at or above it (runners/_images.py); None, or no method, means full size.
Load option `exact_decode` (CLI `--exact-decode`) ignores it: full decode, the reference path.
The helpers below compute the usual needs.

    expected_decode_need(width, height, options) -> (min_width, min_height) | None   (optional)
What decode_need is expected to say once the model is loaded, asked BEFORE the load: the photos
that arrive while the model loads are decoded meanwhile at that size (runners/_decode_ahead.py).
A guess costs nothing when wrong: after the load each photo whose real need differs is decoded
again. Worth it where decoding is a fair share of the model's time (WD14 on a CPU).
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any, Protocol, TypedDict

from runners._images import DecodedImage
from schemas.protocol import ERROR_WEIGHTS_MISSING, LoadSpec, Tag


class LoadResult(TypedDict, total=False):
    device: str  # required: the device actually used
    dtype: str  # required
    model_version: str  # required: revision or local path
    notes: list[str]


class ImageResult(TypedDict, total=False):
    status: str  # "ok" or "no_tags" (errors are raised, bad images never reach infer); a served
    # model's image that failed alone may be "error" or "timeout" (runners/adapters/openai_compat.py)
    message: str
    fix: str  # with such a status: what to do about it
    tags: list[Tag]
    caption: str | None
    raw: dict[str, Any]


class Adapter(Protocol):
    def load(self, spec: LoadSpec) -> LoadResult: ...

    def infer(self, images: list[DecodedImage], options: dict[str, Any]) -> list[ImageResult]: ...


DecodeNeed = tuple[int, int] | None


def longest_side_need(width: int, height: int, side: int) -> tuple[int, int]:
    """The image scaled so its longest side is `side` (pad-to-square then resize: WD14)."""
    scale = side / max(width, height)
    return math.ceil(width * scale), math.ceil(height * scale)


def shortest_side_need(width: int, height: int, side: int) -> tuple[int, int]:
    """The image scaled so its shortest side is `side` (resize shortest side, then crop: CLIP)."""
    scale = side / min(width, height)
    return math.ceil(width * scale), math.ceil(height * scale)


def processor_size_need(size: Any) -> DecodeNeed:
    """A transformers image processor that resizes every image to one fixed {height, width}."""
    if isinstance(size, dict) and isinstance(size.get("height"), int) and isinstance(size.get("width"), int):
        return size["width"], size["height"]
    return None  # another resize rule (shortest_edge, ...): decode at full size


class WeightsMissing(Exception):
    """The weights are neither at the local path nor in the Hugging Face cache (offline). Sent as the
    error type schemas.protocol.ERROR_WEIGHTS_MISSING (runners/host.py)."""

    error_type = ERROR_WEIGHTS_MISSING


def require_config(folder: Path, spec: LoadSpec) -> Path:
    """`folder`/config.json, or WeightsMissing saying what --weights expected: a library given a folder
    without it answers with its whole list of known model types, which names nothing useful."""
    path = folder / "config.json"
    if not path.is_file():
        raise WeightsMissing(f"{folder} has no config.json: not a snapshot folder of {spec['hub_id']}")
    return path


def pick_torch_device(requested: str) -> str:
    """auto -> cuda > mps > cpu. An explicit device that is not available is an error."""
    import torch

    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available(),
    }
    if requested == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if available[d])
    if not available.get(requested, False):
        raise RuntimeError(
            f"device {requested!r} is not available in this runner "
            f"(available: {', '.join(d for d, ok in available.items() if ok)}); use --device auto"
        )
    return requested


def pick_torch_dtype(requested: str, device: str) -> Any:
    """auto -> bfloat16 on CUDA when supported, float16 on other GPUs, float32 on CPU."""
    import torch

    if requested != "auto":
        return getattr(torch, requested)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def available_devices() -> list[str]:
    """Devices this env can use (for hello): torch's, else onnxruntime's execution providers."""
    try:
        import torch
    except ImportError:
        try:
            import onnxruntime
        except ImportError:
            return []
        return [f"onnxruntime:{p}" for p in onnxruntime.get_available_providers()]
    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        out.append("mps")
    return out


def weights_dir(spec: LoadSpec, allow_patterns: list[str] | None = None) -> Path:
    """The folder holding the model's files: the local override, or the pinned Hub snapshot.

    Offline (`spec["offline"]`), only the Hugging Face cache is consulted, and a miss is a
    WeightsMissing error naming the fix.
    """
    if local := spec.get("local_path"):
        path = Path(local).expanduser()
        if not path.exists():
            raise WeightsMissing(f"local weights path {path} does not exist")
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError

    try:
        return Path(
            snapshot_download(
                spec["hub_id"],
                revision=spec["revision"],
                allow_patterns=allow_patterns,
                local_files_only=spec["offline"] or _hub_offline(),
            )
        )
    except GatedRepoError as exc:
        raise WeightsMissing(
            f"{spec['hub_id']} is gated: accept its licence at https://huggingface.co/{spec['hub_id']} with your "
            f"account, then `hf auth login` or export HF_TOKEN=... and run again; or pass "
            f"--weights {spec['name']}=/path/to/model"
        ) from exc
    except Exception as exc:
        if spec["offline"] or _hub_offline():
            raise WeightsMissing(
                f"{spec['hub_id']}@{spec['revision'][:12]} is not in the Hugging Face cache and mltag is offline; "
                f"run once without --offline to download it, or pass --weights {spec['name']}=/path/to/model"
            ) from exc
        raise


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def fingerprint(*paths: Path) -> str:
    """A cheap content fingerprint of (possibly GB-sized) files: sizes plus first and last MiB."""
    digest = hashlib.sha256()
    for path in paths:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size};".encode())
        with open(path, "rb") as f:
            digest.update(f.read(1 << 20))
            f.seek(max(size - (1 << 20), 0))
            digest.update(f.read())
    return digest.hexdigest()[:12]


def rss_mb() -> float | None:
    """Resident memory of this process in MB (Linux /proc; None elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def gpu_memory_mb() -> float | None:
    try:
        import torch
    except ImportError:
        return None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return float(torch.cuda.max_memory_allocated()) / 2**20
    return None
