"""Qwen2-VL and Qwen2.5-VL (native transformers classes; one adapter for both).

Runs in the `modern` env through runners/_vlm.py's GenerativeAdapter. The class comes from the
checkpoint's config.json `model_type` (MODEL_CLASSES), so `--weights` may point any registry
entry of this family at either generation; anything else (the remote-code Qwen-VL of 2023, a
Qwen3-VL) is refused at load, before the weights are fetched, with the fix named.

The recipe is the model cards' and transformers model docs': one user turn [image, text] through
the processor's chat template (the repos' template adds its default system message "You are a
helpful assistant." and writes `<|vision_start|><|image_pad|><|vision_end|>` for the image, which
the processor expands to one `<|image_pad|>` per image token), greedy `generate`, then decode only
the tokens after the prompt. No qwen-vl-utils: it only loads and resizes images, which the
processor does (smart_resize) once min/max pixels are given.

Resolution ([load] options, pixel counts; a table per device like [load] dtype, or one integer):
    min_pixels, max_pixels   the image is resized, aspect ratio kept, to a multiple of 28 px per side
                             with min_pixels <= width x height <= max_pixels; one image token per
                             28 x 28 px. Defaults (DEFAULT_PIXELS): at most 256 tokens on CPU, 1280
                             (the model cards' suggested upper bound) on CUDA, 512 on MPS; the
                             checkpoints' own limit is 16384 tokens, far too slow on a CPU.
They reach the processor as `size={"shortest_edge", "longest_edge"}` at every call: transformers
5.23 turns `AutoProcessor.from_pretrained(..., min_pixels=, max_pixels=)` into call-time kwargs
it warns are deprecated, and ignores a `size` given to from_pretrained. They are load options, not
infer options: the runner host already reads an infer option `max_pixels` (its decoder's limit).

Batching: images of different sizes give prompts of different lengths; the tokenizer pads on the
left, and the tests check that a batch gives the one-by-one results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runners._images import DecodedImage
from runners._vlm import GenerativeAdapter, for_device
from runners.base import DecodeNeed, ImageResult, pick_torch_device
from schemas.protocol import LoadSpec

MODEL_CLASSES = {"qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration", "qwen2_vl": "Qwen2VLForConditionalGeneration"}
TOKEN_PX = 28  # 14 px patches, merged 2 x 2 into one image token
DEFAULT_PIXELS = {
    "min_pixels": {"cpu": 4 * TOKEN_PX**2, "cuda": 4 * TOKEN_PX**2, "mps": 4 * TOKEN_PX**2},
    "max_pixels": {"cpu": 256 * TOKEN_PX**2, "cuda": 1280 * TOKEN_PX**2, "mps": 512 * TOKEN_PX**2},
}
NATIVE_REPOS = "Qwen/Qwen2.5-VL-7B-Instruct, Qwen/Qwen2-VL-7B-Instruct or Qwen/Qwen2-VL-2B-Instruct"


def model_class_for(config: dict[str, Any], where: str) -> str:
    """The transformers class for a checkpoint's config.json; a clear refusal for anything else."""
    model_type = config.get("model_type")
    if model_type in MODEL_CLASSES:
        return MODEL_CLASSES[model_type]
    if model_type == "qwen" or "auto_map" in config:
        raise ValueError(
            f"{where} is a remote-code checkpoint (config model_type {model_type!r}, auto_map), which "
            f"mltag does not run: use a Qwen2-VL / Qwen2.5-VL repo in the native transformers format, "
            f"e.g. {NATIVE_REPOS}"
        )
    raise ValueError(
        f"{where} is not a Qwen2-VL or Qwen2.5-VL checkpoint (config model_type {model_type!r}, "
        f"expected one of {', '.join(MODEL_CLASSES)}): point --weights at one of {NATIVE_REPOS}"
    )


def pixel_bounds(options: dict[str, Any], device: str) -> tuple[int, int]:
    """(min_pixels, max_pixels) for `device` from load options: an integer, or a table per device."""
    bounds = []
    for key, defaults in DEFAULT_PIXELS.items():
        value = for_device(options, key, device, defaults, what="load option")
        if isinstance(value, bool) or not isinstance(value, int) or value < TOKEN_PX**2:
            raise ValueError(
                f"load option {key} must be a pixel count >= {TOKEN_PX**2} (one {TOKEN_PX} x {TOKEN_PX} "
                f"px image token), e.g. {256 * TOKEN_PX**2} for 256 tokens, or a table per device "
                f"like {{cpu = {256 * TOKEN_PX**2}, cuda = {1280 * TOKEN_PX**2}}}; got {value!r}"
            )
        bounds.append(value)
    low, high = bounds
    if low > high:
        raise ValueError(f"load option min_pixels ({low}) is larger than max_pixels ({high}) on {device}")
    return low, high


def chat(prompt: str) -> list[dict[str, Any]]:
    """The model cards' conversation: one user turn, the image first, then the question."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


class Adapter(GenerativeAdapter):
    model_class = ""  # set per checkpoint by check_checkpoint(), from config.json
    supports_batching = True

    def __init__(self) -> None:
        super().__init__()
        self.pixels = (0, 0)

    def check_checkpoint(self, config: dict[str, Any], where: str, spec: LoadSpec) -> None:
        self.pixels = pixel_bounds(spec["options"], pick_torch_device(spec["device"]))  # a bad option fails early
        self.model_class = model_class_for(config, where)

    def load_processor(self, folder: Path, options: dict[str, Any]) -> Any:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(folder)
        processor.tokenizer.padding_side = "left"  # generation continues at the right end of every row
        low, high = self.pixels
        self.notes = (
            f"architecture {self.model_class} (from config.json); prompt: the chat template's user turn "
            "[image, text], after its default system message",
            f"resolution on {self.device}: images resized to {low:,}..{high:,} px, one image token per "
            f"{TOKEN_PX} x {TOKEN_PX} px ({low // TOKEN_PX**2}..{high // TOKEN_PX**2} tokens); "
            "[load] min_pixels / max_pixels change it; raw.vision says what ran",
        )
        return processor

    def prepare(self, images: list[Any], prompt: str) -> Any:
        text = self.processor.apply_chat_template(chat(prompt), add_generation_prompt=True)
        low, high = self.pixels
        return self.processor(
            images=images,
            text=[text] * len(images),
            padding=True,
            padding_side="left",
            size={"shortest_edge": low, "longest_edge": high},
            return_tensors="pt",
        )

    def decode_need(self, width: int, height: int, options: dict[str, Any]) -> DecodeNeed:
        """The size smart_resize gives the original within the pixel budget (aspect ratio kept)."""
        resized_width, resized_height = self._vision(width, height)["resized"]
        return resized_width, resized_height

    def infer(self, images: list[DecodedImage], options: dict[str, Any]) -> list[ImageResult]:
        results = super().infer(images, options)
        for image, result in zip(images, results, strict=True):
            result["raw"]["vision"] = self._vision(*image.image().size)
        return results

    def _vision(self, width: int, height: int) -> dict[str, Any]:
        """What the model saw of a width x height image: the resized size and its image token count."""
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        ip = self.processor.image_processor
        factor = ip.patch_size * ip.merge_size
        low, high = self.pixels
        h, w = smart_resize(height, width, factor=factor, min_pixels=low, max_pixels=high)
        return {"min_pixels": low, "max_pixels": high, "resized": [w, h], "image_tokens": (h // factor) * (w // factor)}
