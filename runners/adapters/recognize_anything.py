"""RAM++ (Recognize Anything Plus) through the `ram` package (xinyu1205/recognize-anything).

Runs in the `ram` env (transformers <= 4.55.4, timm 0.4.12, fairscale: the package's own pins).
Loading follows the repository's inference_ram_plus.py: `ram_plus(pretrained=<.pth>, image_size,
vit, text_encoder_type)`, then the package's `generate_tag` (what `inference_ram` calls) on
`get_transform(image_size)` tensors. The architecture (`vit`: swin_l / swin_b / a ViT, and its
input size) is read from the checkpoint's keys, so the released swin-L 384 px checkpoint and other
RAM++ checkpoints load with the right builder arguments.

Scores: RAM++ decides per class `sigmoid(logit) > threshold`, the thresholds being 0.68 overridden
per class (ram/data/ram_tag_list_threshold.txt). `generate_tag` returns only the names, so a
forward hook on the model's final `fc` layer records the logits of the very call that produced
them: each tag carries its sigmoid score, and raw.scores keeps the score of every one of the 4,585
classes (raw.tags_text / tags_chinese: the package's own " | " strings, unchanged).

The package builds a BERT tokenizer from `text_encoder_type` (upstream: "bert-base-uncased" from
the Hub at construction). Here it comes from the `--weights` folder when that holds a vocab.txt,
else from bert-base-uncased at a pinned revision in the Hugging Face cache (load options
`text_encoder`, `text_encoder_revision`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from runners._images import DecodedImage
from runners.base import ImageResult, LoadResult, WeightsMissing, fingerprint, pick_torch_device, weights_dir
from schemas.protocol import LoadSpec, Tag

CHECKPOINT = "ram_plus_swin_large_14m.pth"
SCORE_NOTE = (
    "scores: sigmoid per class (independent probabilities); a tag is reported when its score exceeds "
    "its class threshold (0.68, or the per-class value of ram_tag_list_threshold.txt); raw.scores has "
    "all 4,585 classes"
)


def architecture(state: dict[str, Any], image_size: int | None) -> tuple[str, int]:
    """(vit, image_size) for ram_plus() from a checkpoint's state dict keys and shapes."""
    if "visual_encoder.pos_embed" in state:  # a plain ViT (the package's create_vit: base | large)
        width = state["visual_encoder.pos_embed"].shape[-1]
        side = math.isqrt(state["visual_encoder.pos_embed"].shape[1] - 1) * 16
        return ("base" if width == 768 else "large"), image_size or side
    patch = state.get("visual_encoder.patch_embed.proj.weight")
    if patch is None:
        raise ValueError("not a RAM++ checkpoint: no visual_encoder weights")
    return ("swin_l" if patch.shape[0] == 192 else "swin_b"), image_size or 384


class Adapter:
    def __init__(self) -> None:
        self.model: Any = None
        self.device = "cpu"
        self.image_size = 384
        self.logits: list[Any] = []

    def _checkpoint(self, spec: LoadSpec, name: str) -> Path:
        local_path = spec.get("local_path")
        local = Path(local_path).expanduser() if local_path else None
        if local is not None and local.is_file():
            return local
        folder = weights_dir(spec, allow_patterns=[name])
        if not (folder / name).is_file():
            raise WeightsMissing(f"{folder} has no {name}; point --weights at the .pth file or its folder")
        return folder / name

    def _tokenizer_dir(self, spec: LoadSpec, checkpoint: Path) -> str:
        if (checkpoint.parent / "vocab.txt").is_file():
            return str(checkpoint.parent)
        options = spec["options"]
        tok_spec: LoadSpec = {
            **spec,
            "name": spec["name"],
            "local_path": None,
            "hub_id": options.get("text_encoder", "bert-base-uncased"),
            "revision": options["text_encoder_revision"],
        }
        return str(weights_dir(tok_spec, allow_patterns=["vocab.txt", "tokenizer_config.json", "config.json"]))

    def load(self, spec: LoadSpec) -> LoadResult:
        import torch
        from ram.models import ram_plus

        checkpoint = self._checkpoint(spec, spec["options"].get("checkpoint", CHECKPOINT))
        state = torch.load(checkpoint, map_location="cpu", mmap=True)["model"]  # keys and shapes only
        vit, self.image_size = architecture(state, spec["options"].get("image_size"))
        del state
        self.device = pick_torch_device(spec["device"])
        model = ram_plus(
            pretrained=str(checkpoint),
            image_size=self.image_size,
            vit=vit,
            text_encoder_type=self._tokenizer_dir(spec, checkpoint),
        )
        self.model = model.eval().to(self.device)
        self.model.fc.register_forward_hook(lambda module, args, out: self.logits.append(out.detach()))
        version = spec["revision"] if not spec.get("local_path") else f"{checkpoint} ({fingerprint(checkpoint)})"
        return {
            "device": self.device,
            "dtype": "float32",
            "model_version": version,
            "notes": [
                SCORE_NOTE,
                f"RAM++ image encoder {vit} at {self.image_size} px (aspect not kept)",
                f"{self.model.num_class} classes",
            ],
        }

    def infer(self, images: list[DecodedImage], options: dict[str, Any]) -> list[ImageResult]:
        import torch
        from ram import get_transform

        if self.model is None:
            raise RuntimeError("infer before load")
        transform = get_transform(self.image_size)
        batch = torch.stack([transform(img.rgb()) for img in images]).to(self.device)
        self.logits.clear()
        with torch.no_grad():
            english, chinese = self.model.generate_tag(batch)
        if len(self.logits) != 1:
            raise RuntimeError(f"expected one call of the tagging head, saw {len(self.logits)}")
        scores = torch.sigmoid(self.logits[0].squeeze(-1).float()).cpu()
        return [self._result(english[i], chinese[i], scores[i].tolist()) for i in range(len(images))]

    def _result(self, english: str, chinese: str, scores: list[float]) -> ImageResult:
        names = [str(n) for n in self.model.tag_list]
        thresholds = self.model.class_threshold.tolist()
        index = {n: i for i, n in enumerate(names)}
        said = [t for t in english.split(" | ") if t]
        tags: list[Tag] = sorted(
            ({"name": t, "score": round(scores[index[t]], 6), "category": "ram"} for t in said),
            key=lambda t: -t["score"],
        )
        raw = {
            "tags_text": english,
            "tags_chinese": chinese,
            "scores": {n: round(s, 6) for n, s in zip(names, scores, strict=True)},
            "above_threshold": [n for n, s, th in zip(names, scores, thresholds, strict=True) if s > th],
        }
        if not tags:
            return {"status": "no_tags", "tags": [], "raw": raw, "message": "no class above its threshold"}
        return {"status": "ok", "tags": tags, "raw": raw}
