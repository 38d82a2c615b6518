"""Results stores written directly (no runner, no model) for `mltag serve`'s tests and bench/serve.py.

Tags are drawn from a small vocabulary with a seeded generator, so every store is the same on every
machine; three models: a tagger that mostly agrees with the truth, one that is noisy, a captioner.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from orchestrator.images import ImageRef, hash_file
from orchestrator.store import CellMeta, ResultStore

VOCAB = [
    "rust",
    "window",
    "graffiti",
    "corridor",
    "stairs",
    "door",
    "chair",
    "peeling paint",
    "hospital",
    "factory",
    "church",
    "car",
    "tree",
    "sky",
    "water",
    "tiles",
    "machine",
    "bed",
    "piano",
    "mirror",
]
MODELS = {"good": "tagger", "noisy": "tagger", "cap": "captioner"}
HOSTILE = '<img src=x onerror="window.__pwned=1">'


def truth_of(index: int) -> list[str]:
    """The tags a photo 'really' has (what a careful labeller would say)."""
    rnd = random.Random(index)
    return rnd.sample(VOCAB, 3)


def cells_for(index: int) -> dict[str, dict[str, Any]]:
    rnd = random.Random(10_000 + index)
    truth = truth_of(index)
    good = [{"name": t, "score": round(rnd.uniform(0.6, 0.99), 3), "category": "general"} for t in truth[:3]]
    good.append({"name": rnd.choice(VOCAB), "score": round(rnd.uniform(0.35, 0.5), 3), "category": "general"})
    noisy = [
        {"name": t, "score": round(rnd.uniform(0.3, 0.9), 3), "category": "general"}
        for t in {truth[0], *rnd.sample(VOCAB, 4)}
    ]
    caption = f"A photo of a {truth[0]} with {truth[1]}."
    return {
        "good": {"status": "ok", "tags": good, "inference_s": 0.05},
        "noisy": {"status": "ok", "tags": noisy, "inference_s": 0.02}
        if index % 17
        else {"status": "timeout", "message": "timed out after 10 s", "inference_s": None},
        "cap": {"status": "ok", "caption": caption, "tags": [], "inference_s": 0.4},
    }


def refs(folder: Path, n: int, per_folder: int = 1000) -> Iterator[ImageRef]:
    """n photos that do not exist on disk (vanished photos: results but no file)."""
    for i in range(n):
        sha = hashlib.sha256(f"photo {i}".encode()).hexdigest()
        yield ImageRef(folder / f"set{i // per_folder:03d}" / f"IMG_{i:06d}.jpg", sha, 1000 + i)


def fill(db: ResultStore, images: list[ImageRef], start: int = 0) -> None:
    """Cells of the three models for `images` (photo i gets cells_for(start + i))."""
    db.record_images("run1", images)
    with db.writing() as conn:  # one transaction: the bench writes 300,000 cells
        for i, img in enumerate(images):
            for model, cell in cells_for(start + i).items():
                conn.execute(
                    "INSERT OR REPLACE INTO cells (sha256, model, kind, status, message, options_key, "
                    "inference_s, run_id, time, cell) VALUES (?, ?, ?, ?, ?, 'k', ?, 'run1', ?, ?)",
                    (
                        img.sha256,
                        model,
                        MODELS[model],
                        cell["status"],
                        cell.get("message", ""),
                        cell.get("inference_s"),
                        1.0 + start + i,
                        _json(cell),
                    ),
                )


def _json(cell: dict[str, Any]) -> str:
    from orchestrator import jsontext

    return jsontext.dumps(cell)


def new_store(path: Path) -> ResultStore:
    db = ResultStore(path)
    db.begin_run("run1", 0.0, {}, ["analyze"])
    for model, kind in MODELS.items():
        db.put_model(
            "run1",
            model,
            {
                "name": model,
                "kind": kind,
                "adapter": "",
                "env": "",
                "hub_id": "h/" + model,
                "revision": "r",
                "weights": None,
                "status": "ok",
                "message": "",
                "device": "cpu",
                "dtype": None,
                "model_version": None,
                "load_s": 1.5,
                "warmup_s": 0.1,
                "notes": [],
            },
        )
    return db


def photo_store(path: Path, folder: Path, n: int = 12, hostile: bool = True) -> tuple[ResultStore, list[ImageRef]]:
    """A store of `n` real JPEGs in `folder` (two subfolders), the last one deleted after the run (a
    vanished photo), photo 0 with a hostile tag and caption."""
    images = []
    for i in range(n):
        target = folder / ("hall" if i % 2 else "yard") / f"p{i:02d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (320 + i, 200), ((i * 40) % 255, 90, 160)).save(target, "JPEG")
        images.append(hash_file(target))
    db = new_store(path)
    fill(db, images)
    if hostile:
        cell = {"status": "ok", "caption": HOSTILE, "tags": [{"name": HOSTILE, "score": 0.9}], "inference_s": 0.1}
        db.put_cell("run1", images[0].sha256, "cap", cell, CellMeta(options_key="k", kind="captioner"))
    images[-1].path.unlink()
    return db, images
