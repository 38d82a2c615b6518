"""A hand-made result document + comparison for the HTML report tests (the shapes of
schemas/result.schema.json and the comparison API), with hostile model output in it.

Three real small image files (one EXIF-rotated JPEG, one RGBA PNG, one greyscale PNG) and one file
that is not an image; four models with every kind of status.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from orchestrator.document import Cell, Document, ModelEntry, Tag

HOSTILE_CAPTION = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
HOSTILE_TAG = "<b>bold</b>"
MODELS = ("wd14", "clip", "florence2", "broken")
UNREADABLE = "not-an-image.jpg"


def _sha(i: int) -> str:
    return f"{i:x}" * 64


def write_images(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rotated = Image.new("RGB", (120, 60), (200, 40, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display: the thumbnail must come out 60 wide x 120 high
    rotated.save(folder / "rotated.jpg", exif=exif.tobytes())
    Image.new("RGBA", (80, 80), (0, 128, 255, 100)).save(folder / "alpha.png")
    Image.linear_gradient("L").resize((64, 40)).save(folder / "grey.png")
    (folder / UNREADABLE).write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return [folder / n for n in ("rotated.jpg", "alpha.png", "grey.png", UNREADABLE)]


def _tag(name: str, score: float, category: str | None = None, estimated: bool = False) -> Tag:
    tag: Tag = {"name": name, "score": score}
    if category is not None:
        tag["category"] = category
    if estimated:
        tag["estimated"] = True
    return tag


def _model(
    name: str, kind: str, status: str = "ok", load_s: float | None = 1.5, warmup_s: float | None = 0.2
) -> ModelEntry:
    return {
        "name": name,
        "kind": kind,
        "adapter": f"runners.adapters.{name}",
        "env": "onnx",
        "hub_id": f"org/{name}",
        "revision": "0123456789abcdef" * 2 + "01234567",
        "weights": None,
        "status": status,
        "message": "",
        "fix": "",
        "device": "cpu",
        "dtype": "float32",
        "model_version": None,
        "load_s": load_s,
        "warmup_s": warmup_s,
        "memory_mb": 321.0,
        "notes": [f"{name} <notes> & scores"],
        "reload_s": [],
        "crashes": 0,
        "timeouts": 0,
        "log": None,
        "runner": None,
    }


def _cells(i: int) -> dict[str, Cell]:
    if i == 3:  # the unreadable file
        bad: Cell = {"status": "bad_image", "message": "cannot identify image file", "inference_s": None}
        return {m: bad.copy() for m in MODELS[:3]} | {
            "broken": {"status": "skipped", "message": "env missing", "fix": "make setup-envs MODELS=broken"}
        }
    wd14_tags = [
        _tag("broken_window", 0.91, category="general"),
        _tag(HOSTILE_TAG, 0.55, category="general"),
        _tag("graffiti", 0.4 - i * 0.1, category="general"),
        _tag("general", 0.8, category="rating"),
    ]
    clip_tags = [_tag("broken window", 0.3), _tag("rust", 0.2), _tag("staircase", 0.05 * (i + 1))]
    cells: dict[str, Cell] = {
        "wd14": {
            "status": "ok",
            "tags": wd14_tags if i != 2 else [],
            "inference_s": 0.031 + i / 100,
            "raw": {},
            "image": {"width": 120, "height": 60, "format": "JPEG", "mode": "RGB", "exif_orientation": 6},
        },
        "clip": {"status": "ok", "tags": clip_tags, "inference_s": 0.25, "raw": {}},
        "florence2": {
            "status": "ok",
            "caption": HOSTILE_CAPTION if i == 0 else "A rusty staircase.",
            "tags": [_tag("staircase", 0.7, estimated=True), _tag("rust", 0.5, estimated=True)],
            "inference_s": 2.5,
            "raw": {},
        },
        "broken": {
            "status": "timeout" if i == 0 else "error",
            "message": "runner <b>did not</b> answer",
            "inference_s": None,
        },
    }
    if i == 2:
        cells["wd14"]["status"] = "no_tags"
    return cells


def make_document(folder: Path) -> Document:
    paths = write_images(folder)
    return {
        "schema_version": 1,
        "mltag_version": "0.1.0",
        "run_id": "20260101-000000-1",
        "started": "2026-01-01T00:00:00",
        "duration_s": 12.5,
        "options": {
            "timeout_s": None,
            "device": "cpu",
            "offline": True,
            "warmup": True,
            "batch_size": 1,
            "threshold": None,
            "top": 3,
            "weights": {},
            "infer_overrides": {},
        },
        "models": [
            _model("wd14", "tagger"),
            _model("clip", "zero-shot", load_s=12.0),
            _model("florence2", "captioner", load_s=30.0, warmup_s=4.0),
            _model("broken", "tagger", status="failed", load_s=None, warmup_s=None),
        ],
        "images": [
            {"path": str(p), "sha256": _sha(i + 1), "size_bytes": p.stat().st_size, "results": _cells(i)}
            for i, p in enumerate(paths)
        ],
    }
