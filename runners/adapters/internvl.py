"""InternVL3 in the native transformers format (OpenGVLab/InternVL3-*-hf repos only).

Runs in the `modern` env through runners/_vlm.py's GenerativeAdapter. The recipe is the
transformers model doc's: one user turn [image, text] through the processor's chat template
(ChatML; the image part becomes `<IMG_CONTEXT>`, which the processor expands to `<img>` +
`<IMG_CONTEXT>` x 256 per tile + `</img>`), greedy `generate`, then decode only the tokens after
the prompt. No system message: the -hf chat template adds none.

The remote-code repos (OpenGVLab/InternVL3-8B, config model_type `internvl_chat`, `model.chat()`)
are refused at load with the name of the -hf repo to use instead: mltag never runs remote code.

Image tiling (infer options, so `--option` can change them per run):
    max_patches      how many 448 px tiles the image is cut into (a grid close to its aspect ratio,
                     plus a 448 px thumbnail of the whole image when there is more than one tile);
                     an integer, or a table per device like [load] dtype. Default (DEFAULT_MAX_PATCHES):
                     cpu 1 (one 448 px view: 256 image tokens, where 12 tiles would mean ~3,300
                     tokens of prefill per image on a CPU), cuda 12 (the processor's and model
                     card's default), mps 6.
    crop_to_patches  false: never tile (one 448 px view), whatever max_patches says.
Every row of a batch gets the same prompt, but images of different aspect ratios get different
tile counts and so prompts of different lengths: the processor pads on the left (it defaults to
that; `prepare` says so explicitly), and tests check that a batch gives the one-by-one results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runners._images import DecodedImage
from runners._vlm import GenerativeAdapter, for_device
from runners.base import DecodeNeed, ImageResult
from schemas.protocol import LoadSpec

NATIVE_MODEL_TYPE = "internvl"
REMOTE_MODEL_TYPE = "internvl_chat"
DEFAULT_MAX_PATCHES = {"cpu": 1, "cuda": 12, "mps": 6}


def native_repo(hub_id: str) -> str:
    """The native-format repo for a model: OpenGVLab publishes it as `<remote repo>-hf`."""
    return hub_id if hub_id.endswith("-hf") else f"{hub_id}-hf"


def check_native(config: dict[str, Any], where: str, hub_id: str) -> None:
    """Refuse anything but a native InternVL checkpoint, naming the -hf repo for the remote-code one."""
    model_type = config.get("model_type")
    if model_type == NATIVE_MODEL_TYPE:
        return
    repo = native_repo(hub_id)
    if model_type == REMOTE_MODEL_TYPE:
        raise ValueError(
            f"{where} is a remote-code InternVL checkpoint (config model_type {REMOTE_MODEL_TYPE!r}, "
            f"model.chat()), which mltag does not run: use the native transformers port {repo} "
            f"(download it, or point --weights at a local copy of it)"
        )
    raise ValueError(
        f"{where} is not an InternVL checkpoint in the native transformers format (config model_type "
        f"{model_type!r}, expected {NATIVE_MODEL_TYPE!r}): use {repo}"
    )


def tiling(options: dict[str, Any], device: str) -> dict[str, Any]:
    """The image processor's tiling kwargs (crop_to_patches, max_patches) from infer options."""
    crop = options.get("crop_to_patches", True)
    if not isinstance(crop, bool):
        raise ValueError(f"option crop_to_patches must be true or false, got {crop!r}")
    value = for_device(options, "max_patches", device, DEFAULT_MAX_PATCHES)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"option max_patches must be an integer >= 1 (1 = one 448 px view, no tiling) or a table "
            f"per device like {{cpu = 1, cuda = 12}}, got {value!r}"
        )
    patches = value if crop else 1
    return {"crop_to_patches": patches > 1, "max_patches": patches}


def chat(prompt: str) -> list[dict[str, Any]]:
    """The model doc's conversation: one user turn, the image first, then the question."""
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]


class Adapter(GenerativeAdapter):
    model_class = "InternVLForConditionalGeneration"
    supports_batching = True

    def __init__(self) -> None:
        super().__init__()
        self.tiling: dict[str, Any] = {}

    def check_checkpoint(self, config: dict[str, Any], where: str, spec: LoadSpec) -> None:
        check_native(config, where, spec["hub_id"])  # a remote-code checkpoint: the -hf repo is named

    def load_processor(self, folder: Path, options: dict[str, Any]) -> Any:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(folder)
        tile = processor.image_processor.size
        self.notes = (
            f"prompt: the chat template's user turn [image, text], no system message; "
            f"{processor.image_seq_length} image tokens per {tile['height']} px tile",
            "image tiling: infer options max_patches (tiles + a thumbnail; 1 = one view; built-in default "
            + ", ".join(f"{d} {n}" for d, n in DEFAULT_MAX_PATCHES.items())
            + ") and crop_to_patches; raw.tiling has what ran per image",
        )
        return processor

    def decode_need(self, width: int, height: int, options: dict[str, Any]) -> DecodeNeed:
        """Full size: the tile grid is chosen from the image's area as well as its aspect ratio, so a
        smaller decode could change the grid the reference code picks."""
        return None

    def infer(self, images: list[DecodedImage], options: dict[str, Any]) -> list[ImageResult]:
        self.tiling = tiling(options, self.device)
        results = super().infer(images, options)
        for image, result in zip(images, results, strict=True):
            result["raw"]["tiling"] = {**self.tiling, "tiles": self._tiles(image)}
        return results

    def _tiles(self, image: DecodedImage) -> int:
        """Tiles the processor cuts this image into (thumbnail included)."""
        width, height = image.image().size
        return int(self.processor.image_processor.get_number_of_image_patches(height, width, dict(self.tiling)))

    def prepare(self, images: list[Any], prompt: str) -> Any:
        text = self.processor.apply_chat_template(chat(prompt), add_generation_prompt=True)
        return self.processor(
            images=images,
            text=[text] * len(images),
            padding=True,
            padding_side="left",
            return_tensors="pt",
            **self.tiling,
        )
