"""Florence-2 (native transformers port, florence-community/*): a caption plus `<OD>` object labels.

Runs in the `modern` env. Follows the transformers model doc: `AutoProcessor` builds the prompt
from a task token (`<image>` x N + bos + the task's question + eos), `generate` with beam search
(num_beams 3), `batch_decode(..., skip_special_tokens=False)` (the `<loc_i>` tokens carry the
boxes) and `post_process_generation(text, task=..., image_size=(w, h))` parses it: a string for
caption tasks, {"bboxes", "labels"} in image pixels for `<OD>`.

Per image: one caption task (default `<MORE_DETAILED_CAPTION>`) and, unless `od=false`, one
`<OD>` run. Tags are the distinct `<OD>` labels; the orchestrator adds tags extracted from the
caption. Florence-2 gives no confidences, so tag scores are estimates (see `od_tags`). Captions
that are empty or loop are not passed on as captions (runners/_text.py); their raw text stays
in `raw`. Images are processed one at a time (batch 1): beam search over a batch pads and
reorders, and Florence-2 is decode-bound anyway. torch and transformers are imported inside
load/infer so that the pure functions here can be used and tested without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, overload

from runners._images import DecodedImage
from runners._text import looks_degenerate
from runners.base import (
    DecodeNeed,
    ImageResult,
    LoadResult,
    fingerprint,
    pick_torch_device,
    pick_torch_dtype,
    processor_size_need,
    weights_dir,
)
from schemas.protocol import LoadSpec, Tag

OD_TASK = "<OD>"
DEFAULT_CAPTION_TASK = "<MORE_DETAILED_CAPTION>"
# Prompt-only tasks whose answer is plain text (tasks that take an input, like grounding, need one).
CAPTION_TASKS = ("<CAPTION>", "<DETAILED_CAPTION>", "<MORE_DETAILED_CAPTION>", "<OCR>")
# The doc recipe uses 1024 for every task; a detailed caption is ~60-200 tokens, so 512 only
# bounds the cost of a looping generation (which would be rejected anyway). <OD> spends 5 tokens
# per box (label + 4 <loc_i>): 512 still allows ~100 boxes.
DEFAULT_MAX_NEW_TOKENS = 512
DEFAULT_OD_MAX_NEW_TOKENS = 512
DEFAULT_NUM_BEAMS = 3  # the model doc's and card's setting
WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.txt"]
MODEL_FILE = "model.safetensors"
SCORE_NOTE = (
    "tag scores are estimates, not probabilities (Florence-2 gives none): each distinct <OD> label "
    "scores 0.5 + 0.5 x the image area fraction of its largest box"
)


def od_tags(od: dict[str, Any] | None, image_size: tuple[int, int]) -> list[Tag]:
    """Distinct `<OD>` labels as tags, best first.

    Estimated score: a detection is a positive claim (floor 0.5) and bigger objects dominate a
    photo, so score = 0.5 + 0.5 * (area of the label's largest box / image area), in [0.5, 1].
    Labels without a letter, or with markup left in ("loc_12>", from a broken generation the
    parser split mid-token), are noise and are skipped.
    """
    if not od:
        return []
    width, height = image_size
    area = float(max(width * height, 1))
    best: dict[str, float] = {}
    for label, box in zip(od.get("labels", []), od.get("bboxes", []), strict=False):
        name = " ".join(str(label).split())
        if not any(ch.isalpha() for ch in name) or "<" in name or ">" in name:
            continue
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        fraction = min(max(x2 - x1, 0.0) * max(y2 - y1, 0.0) / area, 1.0)
        best[name] = max(best.get(name, 0.0), fraction)
    order = list(best)  # first appearance breaks ties
    ranked = sorted(best, key=lambda n: (-best[n], order.index(n)))
    return [{"name": n, "score": round(0.5 + 0.5 * best[n], 4), "category": "od", "estimated": True} for n in ranked]


def task_outputs_result(
    caption_task: str,
    caption_text: str,
    caption: str,
    od_text: str | None,
    od: dict[str, Any] | None,
    image_size: tuple[int, int],
    counts: dict[str, int | None],
) -> ImageResult:
    """One image's result from the decoded texts and their parses (no model involved)."""
    tags = od_tags(od, image_size)
    raw: dict[str, Any] = {
        "caption_text": caption_text,
        "caption_task": caption_task,
        "od_text": od_text,
        "od": od,
        **counts,
    }
    reason = looks_degenerate(caption)
    if reason is None:
        return {"status": "ok", "caption": caption.strip(), "tags": tags, "raw": raw}
    # The caption is withheld; <OD> labels, when there are any, are still a usable result.
    if tags:
        return {
            "status": "ok",
            "caption": None,
            "tags": tags,
            "raw": raw,
            "message": f"caption withheld ({reason}); tags from {OD_TASK} only, raw.caption_text has the output",
        }
    labels = "no object labels" if od is not None else f"{OD_TASK} off (option od)"
    return {
        "status": "no_tags",
        "caption": None,
        "tags": [],
        "raw": raw,
        "message": f"{reason}; {labels}; raw.caption_text has the output",
    }


@overload
def _positive_int(options: dict[str, Any], key: str, default: int) -> int: ...
@overload
def _positive_int(options: dict[str, Any], key: str, default: None) -> int | None: ...
def _positive_int(options: dict[str, Any], key: str, default: int | None) -> int | None:
    value = options.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"option {key} must be a positive integer, got {value!r}")
    return value


def generation_settings(
    options: dict[str, Any], max_positions: int | None = None
) -> tuple[str, bool, dict[str, Any], dict[str, Any]]:
    """(caption task, run <OD>?, generate kwargs for the caption, for <OD>) from infer options.

    `max_positions` is the decoder's position table: longer generations fail deep inside torch
    with "index out of range", so they are refused here with the option's name.
    """
    task = options.get("caption_task", DEFAULT_CAPTION_TASK)
    if task not in CAPTION_TASKS:
        raise ValueError(f"option caption_task must be one of {', '.join(CAPTION_TASKS)}, got {task!r}")
    od = options.get("od", True)
    if not isinstance(od, bool):
        raise ValueError(f"option od must be true or false, got {od!r}")
    # Deterministic beam search, as in the model doc; min_new_tokens forces output length (tests).
    common: dict[str, Any] = {"num_beams": _positive_int(options, "num_beams", DEFAULT_NUM_BEAMS), "do_sample": False}
    min_new = _positive_int(options, "min_new_tokens", None)
    if min_new is not None:
        common["min_new_tokens"] = min_new
    limits = {}
    for key, default in (("max_new_tokens", DEFAULT_MAX_NEW_TOKENS), ("od_max_new_tokens", DEFAULT_OD_MAX_NEW_TOKENS)):
        limits[key] = _positive_int(options, key, default)
        # the decoder start token takes the first position
        if max_positions is not None and limits[key] > max_positions - 1:
            raise ValueError(
                f"option {key}={limits[key]} exceeds this model's limit of {max_positions - 1} "
                f"new tokens (max_position_embeddings {max_positions})"
            )
    return (
        task,
        od,
        {**common, "max_new_tokens": limits["max_new_tokens"]},
        {**common, "max_new_tokens": limits["od_max_new_tokens"]},
    )


class Adapter:
    def __init__(self) -> None:
        self.model: Any = None
        self.processor: Any = None
        self.device = "cpu"
        self.dtype: Any = None

    def load(self, spec: LoadSpec) -> LoadResult:
        from transformers import AutoProcessor, Florence2ForConditionalGeneration

        folder = weights_dir(spec, allow_patterns=WEIGHT_PATTERNS)
        self.device = pick_torch_device(spec["device"])
        self.dtype = pick_torch_dtype(spec["dtype"], self.device)
        self.model = Florence2ForConditionalGeneration.from_pretrained(folder, dtype=self.dtype)
        self.model.to(self.device).eval()
        self.processor = AutoProcessor.from_pretrained(folder)
        dtype = str(self.dtype).removeprefix("torch.")
        return {
            "device": self.device,
            "dtype": dtype,
            "model_version": self._version(spec, folder),
            "notes": self._notes(),
        }

    def _version(self, spec: LoadSpec, folder: Path) -> str:
        local = spec.get("local_path")
        if not local:
            return spec["revision"]
        weights = folder / MODEL_FILE
        if not weights.is_file():
            return local
        return f"{local} ({MODEL_FILE} {fingerprint(weights)})"

    def _notes(self) -> list[str]:
        seq = getattr(self.processor, "num_image_tokens", "?")
        return [
            SCORE_NOTE,
            f"caption: {DEFAULT_CAPTION_TASK} unless option caption_task says otherwise; tags: {OD_TASK} labels "
            f"(option od=false skips it); beam search, num_beams {DEFAULT_NUM_BEAMS} unless option num_beams",
            f"batch 1 (images run one at a time); {seq} image tokens per image",
        ]

    def decode_need(self, width: int, height: int, options: dict[str, Any]) -> DecodeNeed:
        """The processor squashes every image to one fixed size (768 x 768 for Florence-2)."""
        return processor_size_need(self.processor.image_processor.size)

    def infer(self, images: list[DecodedImage], options: dict[str, Any]) -> list[ImageResult]:
        if self.model is None:
            raise RuntimeError("infer before load")
        positions = self.model.config.text_config.max_position_embeddings
        task, run_od, caption_kwargs, od_kwargs = generation_settings(options, positions)
        return [self._one(img, task, run_od, caption_kwargs, od_kwargs) for img in images]

    def _one(
        self, image: DecodedImage, task: str, run_od: bool, caption_kwargs: dict[str, Any], od_kwargs: dict[str, Any]
    ) -> ImageResult:
        rgb = image.rgb()
        # Boxes come out in the ORIGINAL image's pixels, whatever size it was decoded at.
        size = (image.info.get("width", rgb.width), image.info.get("height", rgb.height))
        caption_text, parsed, new, prompt = self._generate(rgb, task, caption_kwargs, size)
        counts: dict[str, int | None] = {
            "new_tokens": new,
            "prompt_tokens": prompt,
            "od_new_tokens": None,
            "od_prompt_tokens": None,
        }
        od_text, od = None, None
        if run_od:
            od_text, od, counts["od_new_tokens"], counts["od_prompt_tokens"] = self._generate(
                rgb, OD_TASK, od_kwargs, size
            )
        return task_outputs_result(task, caption_text, parsed, od_text, od, size, counts)

    def _generate(
        self, rgb: Any, task: str, kwargs: dict[str, Any], size: tuple[int, int]
    ) -> tuple[str, Any, int, int]:
        """(decoded text as generated, parsed answer, new tokens, prompt tokens incl. image tokens)."""
        import torch

        inputs = self.processor(text=task, images=rgb, return_tensors="pt").to(self.device, self.dtype)
        with torch.inference_mode():
            ids = self.model.generate(**inputs, **kwargs)
        # An encoder-decoder's output starts with the decoder start token, which was not generated.
        new_tokens = int(ids.shape[1]) - 1
        text = self.processor.batch_decode(ids, skip_special_tokens=False)[0]
        parsed = self.processor.post_process_generation(text, task=task, image_size=size)[task]
        return text, parsed, new_tokens, int(inputs["input_ids"].shape[1])
