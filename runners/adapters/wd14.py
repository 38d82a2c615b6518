"""WD v3 taggers (SmilingWolf) on onnxruntime: Danbooru tags with an independent sigmoid score each.

Runs in the `onnx` env (no torch). Preprocessing follows SmilingWolf's reference Space
(`SmilingWolf/wd-tagger`, app.py) exactly: alpha on white, pad to a white square with the image
centred, BICUBIC resize to the model's input size, float32 0-255 without normalisation, RGB -> BGR,
NHWC. The graph already ends in a sigmoid: its outputs are probabilities, one per row of
`selected_tags.csv` (category 9 = rating, 0 = general, 4 = character).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from runners._images import DecodedImage
from runners.base import DecodeNeed, ImageResult, LoadResult, fingerprint, longest_side_need, weights_dir
from schemas.protocol import LoadSpec, Tag

MODEL_FILE = "model.onnx"
TAGS_FILE = "selected_tags.csv"
DEFAULT_GENERAL_THRESHOLD = 0.35  # the reference Space's defaults; model.toml [infer] normally sets them
DEFAULT_CHARACTER_THRESHOLD = 0.85
RATING, GENERAL, CHARACTER = 9, 0, 4  # selected_tags.csv category codes (Danbooru's, plus 9)
# Tags the reference Space keeps verbatim: in a kaomoji the underscore is a mouth, not a space.
KAOMOJIS = frozenset(
    {
        "0_0",
        "(o)_(o)",
        "+_+",
        "+_-",
        "._.",
        "<o>_<o>",
        "<|>_<|>",
        "=_=",
        ">_<",
        "3_3",
        "6_9",
        ">_o",
        "@_@",
        "^_^",
        "o_o",
        "u_u",
        "x_x",
        "|_|",
        "||_||",
    }
)
WHITE = (255, 255, 255)
EXPECTED_SIZE = 448  # every WD v3 tagger's input side; the loaded model's own size decides (decode_need)


@dataclass(frozen=True)
class Labels:
    """selected_tags.csv: names in output order, and the output indices of each category."""

    names: list[str]
    rating: np.ndarray
    general: np.ndarray
    character: np.ndarray


def read_labels(path: Path) -> Labels:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"name", "category"} <= set(rows[0]):
        raise ValueError(f"{path}: expected columns tag_id,name,category,count and at least one row")
    names = [row["name"] for row in rows]
    categories = np.array([int(row["category"]) for row in rows])
    labels = Labels(names, *(np.flatnonzero(categories == c) for c in (RATING, GENERAL, CHARACTER)))
    if labels.rating.size == 0:
        raise ValueError(f"{path}: no rating rows (category 9)")
    return labels


def display_name(name: str) -> str:
    """Danbooru underscores become spaces, as in the reference Space, except inside kaomoji."""
    return name if name in KAOMOJIS else name.replace("_", " ")


def preprocess(image: DecodedImage, size: int) -> np.ndarray:
    """One image as the model's (size, size, 3) float32 BGR array, 0-255."""
    rgb = image.rgb(WHITE)
    side = max(rgb.size)
    canvas = Image.new("RGB", (side, side), WHITE)
    canvas.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
    if side != size:
        canvas = canvas.resize((size, size), Image.Resampling.BICUBIC)
    bgr: np.ndarray = np.ascontiguousarray(np.asarray(canvas, dtype=np.float32)[:, :, ::-1])
    return bgr


def pick_providers(requested: str, available: list[str]) -> list[str]:
    """onnxruntime providers for a device request: auto -> CUDA when present, else CPU."""
    has_cuda = "CUDAExecutionProvider" in available
    if requested == "auto":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"] if has_cuda else ["CPUExecutionProvider"]
    if requested == "cpu":
        return ["CPUExecutionProvider"]
    if requested == "cuda" and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise RuntimeError(
        f"device {requested!r} is not available to onnxruntime here "
        f"(providers: {', '.join(available)}); use --device auto"
    )


def _session_options() -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:  # the orchestrator's --threads reaches us this way
        opts.intra_op_num_threads = int(threads)
    return opts


def _input_size(session: Any) -> int:
    shape = session.get_inputs()[0].shape
    if len(shape) != 4 or shape[3] != 3 or not isinstance(shape[1], int) or shape[1] != shape[2]:
        raise ValueError(f"expected a square NHWC input (batch, size, size, 3), the model has {shape}")
    return shape[1]


class Adapter:
    def __init__(self) -> None:
        self.session: Any = None
        self.labels: Labels | None = None
        self.size = 0
        self.input_name = ""

    def load(self, spec: LoadSpec) -> LoadResult:
        import onnxruntime as ort

        folder = weights_dir(spec, allow_patterns=[MODEL_FILE, TAGS_FILE])
        model_path, tags_path = folder / MODEL_FILE, folder / TAGS_FILE
        for path in (model_path, tags_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path.name} not found in {folder}")
        self.labels = read_labels(tags_path)
        providers = pick_providers(spec["device"], ort.get_available_providers())
        self.session = ort.InferenceSession(str(model_path), _session_options(), providers=providers)
        # onnxruntime quietly falls back to CPU when CUDA cannot start: report what it really uses.
        device = "cuda" if "CUDAExecutionProvider" in self.session.get_providers() else "cpu"
        if spec["device"] == "cuda" and device != "cuda":
            raise RuntimeError("onnxruntime could not start its CUDA provider; use --device auto or cpu")
        self.size = _input_size(self.session)
        self.input_name = self.session.get_inputs()[0].name
        outputs = self.session.get_outputs()[0].shape[-1]
        if isinstance(outputs, int) and outputs != len(self.labels.names):
            raise ValueError(f"{TAGS_FILE} has {len(self.labels.names)} rows but the model has {outputs} outputs")
        return {
            "device": device,
            "dtype": "float32",
            "model_version": self._version(spec, model_path),
            "notes": self._notes(spec),
        }

    def _version(self, spec: LoadSpec, model_path: Path) -> str:
        if spec.get("local_path"):
            return f"{spec['local_path']} ({MODEL_FILE} {fingerprint(model_path)})"
        return spec["revision"]

    def _notes(self, spec: LoadSpec) -> list[str]:
        assert self.labels is not None
        # Thresholds are infer options; load only sees them when the caller passes them here too.
        options = spec.get("options", {})
        general = options.get("general_threshold", DEFAULT_GENERAL_THRESHOLD)
        character = options.get("character_threshold", DEFAULT_CHARACTER_THRESHOLD)
        scores = (
            f"scores: independent sigmoid per tag ({len(self.labels.names)} tags), thresholds general "
            f"{general} / character {character} unless infer options say otherwise (raw.thresholds)"
        )
        inputs = (
            f"rating: argmax of {len(self.labels.rating)}; input {self.size}x{self.size} NHWC BGR 0-255, "
            f"white pad to square"
        )
        notes = [scores, inputs]
        if spec["dtype"] not in ("auto", "float32"):
            notes.append(f"dtype {spec['dtype']} ignored: the ONNX graph is float32")
        return notes

    def decode_need(self, width: int, height: int, options: dict[str, Any]) -> DecodeNeed:
        """The longest side becomes the square's side, which is resized to the input size."""
        return longest_side_need(width, height, self.size) if self.size else None

    def expected_decode_need(self, width: int, height: int, options: dict[str, Any]) -> DecodeNeed:
        """decode_need before the load (photos decoded while the session loads): a WD v3 input."""
        return longest_side_need(width, height, EXPECTED_SIZE)

    def infer(self, images: list[DecodedImage], options: dict[str, Any]) -> list[ImageResult]:
        if self.session is None:
            raise RuntimeError("infer before load")
        thresholds = {
            "general": float(options.get("general_threshold", DEFAULT_GENERAL_THRESHOLD)),
            "character": float(options.get("character_threshold", DEFAULT_CHARACTER_THRESHOLD)),
        }
        batch = np.stack([preprocess(img, self.size) for img in images])
        probs = self.session.run(None, {self.input_name: batch})[0]
        return [self._result(row, thresholds) for row in probs]

    def _result(self, probs: np.ndarray, thresholds: dict[str, float]) -> ImageResult:
        assert self.labels is not None
        names, scores = self.labels.names, probs.astype(float).tolist()
        best = max(self.labels.rating, key=lambda i: scores[i])
        tags: list[Tag] = [{"name": names[best], "score": scores[best], "category": "rating"}]
        for kind, indices in (("general", self.labels.general), ("character", self.labels.character)):
            tags += [
                {"name": display_name(names[i]), "score": scores[i], "category": kind}
                for i in indices
                if scores[i] >= thresholds[kind]
            ]
        tags.sort(key=lambda t: -t["score"])
        raw = {
            "scores": dict(zip(names, scores, strict=True)),
            "ratings": {names[i]: scores[i] for i in self.labels.rating},
            "thresholds": thresholds,
        }
        if len(tags) == 1:
            return {
                "status": "no_tags",
                "tags": tags,
                "raw": raw,
                "message": f"no general tag >= {thresholds['general']} and no character tag >= "
                f"{thresholds['character']} (rating only)",
            }
        return {"status": "ok", "tags": tags, "raw": raw}
