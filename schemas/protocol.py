"""Request and reply shapes of the runner protocol.

Every request is a map {"id": int, "op": str, ...}. Every reply echoes the id:
    {"id": int, "ok": True, "result": {...}}  or
    {"id": int, "ok": False, "error": {"type": str, "message": str, "traceback": str}}

Ops:
    hello     -> {"protocol": int, "python": str, "packages": {name: version}, "devices": [...], "pid": int}
    load      {"spec": LoadSpec} -> LoadInfo
    infer     {"images": [ImageIn], "options": {...}} -> {"results": [ImageOut], "batch_s": float}
    shutdown  -> {} and the runner exits
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

PROTOCOL_VERSION = 1

Op = Literal["hello", "load", "infer", "shutdown"]
OPS: tuple[str, ...] = ("hello", "load", "infer", "shutdown")

# ErrorInfo.type values the orchestrator acts on (any other type is an error with its traceback).
# The weights are not at the local path nor in the HF cache: the cell is skipped with the fix, no retry.
ERROR_WEIGHTS_MISSING = "WeightsMissing"


class ErrorInfo(TypedDict):
    type: str
    message: str
    traceback: str


class LoadSpec(TypedDict):
    name: str  # registry name, e.g. "wd14"
    hub_id: str  # e.g. "SmilingWolf/wd-vit-tagger-v3"
    revision: str  # pinned commit
    local_path: str | None  # overrides hub_id when set
    offline: bool  # never touch the network
    device: str  # auto | cpu | cuda | mps
    dtype: str  # auto | float32 | bfloat16 | float16
    cache_dir: str  # a folder the adapter may use for derived caches
    options: dict[str, Any]  # model.toml [load] table plus CLI overrides
    warmup: NotRequired[bool]  # run one inference on a generated image after loading
    remote_code: NotRequired[bool]  # model.toml allows trust_remote_code (at `revision` or local_path only)


class LoadInfo(TypedDict):
    load_s: float
    warmup_s: float | None
    device: str  # the device actually used
    dtype: str
    model_version: str  # what was loaded: revision or local path + fingerprint
    memory_mb: float | None  # RSS (cpu) or allocated VRAM after load
    notes: list[str]  # facts the user should see (e.g. "scores: softmax over 212 terms")


class ImageIn(TypedDict):
    id: str  # opaque id chosen by the orchestrator (content hash)
    name: str  # display name (path)
    data: NotRequired[bytes]  # the encoded file, exactly as on disk (absent for text-only runners)
    context: NotRequired[dict[str, Any]]  # other models' outputs for this image (the judge's input)


class Tag(TypedDict):
    name: str
    score: float
    category: NotRequired[str]  # e.g. wd14 "general" | "character" | "rating"; "od" for detections
    estimated: NotRequired[bool]  # True when the score is not a model probability


class ImageOut(TypedDict):
    id: str
    status: str  # a schemas.status.CellStatus value
    message: NotRequired[str]
    tags: NotRequired[list[Tag]]  # what the model tags the image with (its own thresholds applied)
    caption: NotRequired[str | None]
    raw: NotRequired[dict[str, Any]]  # model output as given: every score, decoded text, parsed structures
    image: NotRequired[dict[str, Any]]  # decoded size and mode, EXIF orientation applied
    inference_s: NotRequired[float]
    error: NotRequired[ErrorInfo]


def request(id_: int, op: str, **fields: Any) -> dict[str, Any]:
    if op not in OPS:
        raise ValueError(f"unknown op {op!r}")
    return {"id": id_, "op": op, **fields}


def ok_reply(id_: int, result: dict[str, Any]) -> dict[str, Any]:
    return {"id": id_, "ok": True, "result": result}


def error_reply(id_: int | None, error: ErrorInfo) -> dict[str, Any]:
    return {"id": id_, "ok": False, "error": error}
