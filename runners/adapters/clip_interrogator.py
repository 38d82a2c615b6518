"""CLIP-Interrogator (PyPI clip-interrogator 0.6.0): a BLIP caption plus the CLIP-ranked phrases of a prompt.

Runs in the `modern` env (the package runs unchanged on transformers 5.23 and open_clip 3.3). The
package's `Interrogator(Config(...))` does the work; the adapter loads its two models itself and
hands them over through Config's `caption_model` / `clip_model` slots, so that both come from
pinned revisions (or `--weights`), not from the package's unpinned downloads:

- caption: Salesforce/blip-image-captioning-large at the pinned revision (the package's 'blip-large'),
  native BlipForConditionalGeneration + processor;
- CLIP: OpenAI ViT-L/14 (the package's 'ViT-L-14/openai') built as open_clip's ViT-L-14-quickgelu
  (the OpenAI weights were trained with QuickGELU; open_clip 3.x builds plain 'ViT-L-14' with GELU)
  from timm/vit_large_patch14_clip_224.openai at a pinned revision (load options clip_hub_id,
  clip_revision).

The package ranks ~111k phrases (flavors, artists, mediums, movements, sites). It downloads their
CLIP text embeddings precomputed from the Hub repo pharma/ci-preprocess when it can (online, real
weights); otherwise (offline, `--weights`) it computes them once with the loaded CLIP and keeps
them under the adapter cache, in a folder keyed by the CLIP weights (load option tables_dir moves it).

Modes (infer option `mode`): best (`interrogate`, the default), fast, classic, negative. The
prompt is kept whole in raw.prompt; its first phrase, the BLIP caption, is the caption; the other
comma-separated phrases are the tags, each scored by the package's own `similarities` (cosine
similarity of the phrase's CLIP text embedding and the image's, not a probability). In negative
mode the phrases are those LEAST like the image (category "negative").

`--weights clip-interrogator=DIR`: DIR/caption (a BLIP save_pretrained folder) and DIR/clip (open_clip's
hub layout: open_clip_config.json + open_clip_model.safetensors).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from runners._images import DecodedImage
from runners.base import (
    ImageResult,
    LoadResult,
    WeightsMissing,
    fingerprint,
    pick_torch_device,
    pick_torch_dtype,
    weights_dir,
)
from schemas.protocol import LoadSpec, Tag

MODES = ("best", "fast", "classic", "negative")
CLIP_FILE = "open_clip_model.safetensors"
SCORE_NOTE = (
    "tag scores are CLIP cosine similarities between the phrase and the image (CLIP-Interrogator's own "
    "`similarities`), typically 0.1-0.35; not probabilities; the first phrase of the prompt, BLIP's "
    "caption, is the caption"
)


def split_prompt(prompt: str, caption: str | None) -> tuple[str | None, list[str]]:
    """(caption, phrases) of an interrogator prompt: the caption leads it (but in negative mode)."""
    rest = prompt
    if caption and prompt.startswith(caption):
        rest = prompt[len(caption) :]
    phrases = [p.strip() for p in rest.split(",")]
    return (caption or None), list(dict.fromkeys(p for p in phrases if p))


class Adapter:
    def __init__(self) -> None:
        self.ci: Any = None
        self.device = "cpu"

    def _caption_folder(self, spec: LoadSpec) -> Path:
        if local := spec.get("local_path"):
            folder = Path(local) / "caption"
            if not (folder / "config.json").is_file():
                raise WeightsMissing(
                    f"{folder} is not a BLIP checkpoint folder (--weights DIR needs DIR/caption and DIR/clip)"
                )
            return folder
        return weights_dir(spec, allow_patterns=["*.json", "*.safetensors", "*.txt"])

    def _clip(self, spec: LoadSpec, precision: str) -> tuple[Any, Any, str]:
        import open_clip

        if local := spec.get("local_path"):
            folder = Path(local) / "clip"
            if not (folder / CLIP_FILE).is_file():
                raise WeightsMissing(f"{folder} has no {CLIP_FILE} (--weights DIR needs DIR/caption and DIR/clip)")
            model, _, preprocess = open_clip.create_model_and_transforms(
                f"local-dir:{folder}", precision=precision, device=self.device
            )
            return model, preprocess, f"{folder} [{fingerprint(folder / CLIP_FILE)}]"
        options = spec["options"]
        clip_spec: LoadSpec = {**spec, "hub_id": options["clip_hub_id"], "revision": options["clip_revision"]}
        folder = weights_dir(clip_spec, allow_patterns=[CLIP_FILE])
        model, _, preprocess = open_clip.create_model_and_transforms(
            options.get("clip_model", "ViT-L-14-quickgelu"),
            pretrained=str(folder / CLIP_FILE),
            precision=precision,
            device=self.device,
        )
        return model, preprocess, f"{options['clip_hub_id']}@{options['clip_revision']}"

    def load(self, spec: LoadSpec) -> LoadResult:
        import torch
        from clip_interrogator import Config, Interrogator
        from transformers import AutoProcessor, BlipForConditionalGeneration

        options = spec["options"]
        self.device = pick_torch_device(spec["device"])
        dtype = pick_torch_dtype(spec["dtype"], self.device)
        if self.device == "cpu" and dtype != torch.float32:
            raise ValueError("CLIP-Interrogator runs in float32 on CPU (the package casts inputs itself)")
        caption_folder = self._caption_folder(spec)
        caption_model = BlipForConditionalGeneration.from_pretrained(caption_folder, dtype=dtype).eval()
        processor = AutoProcessor.from_pretrained(caption_folder)
        precision = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]
        clip_model, preprocess, clip_version = self._clip(spec, precision)
        local = bool(spec.get("local_path"))
        tables = Path(options.get("tables_dir") or spec["cache_dir"]) / fingerprint_of(clip_version)
        config = Config(
            clip_model_name="ViT-L-14/openai",
            caption_model_name="blip-large",
            cache_path=str(tables),
            download_cache=not (local or spec["offline"]),
            device=self.device,
            quiet=True,
            caption_max_length=int(options.get("caption_max_length", 32)),
        )
        # Config's model slots are plain class attributes (not dataclass fields): set them after construction
        config.caption_model, config.caption_processor = caption_model, processor
        config.clip_model, config.clip_preprocess = clip_model.eval(), preprocess
        t0 = time.perf_counter()
        self.ci = Interrogator(config)
        tables_s = time.perf_counter() - t0
        caption_version = (
            f"{caption_folder} [{fingerprint(*sorted(caption_folder.glob('*.safetensors')))}]"
            if local
            else f"{spec['hub_id']}@{spec['revision']}"
        )
        return {
            "device": self.device,
            "dtype": str(dtype).removeprefix("torch."),
            "model_version": f"caption {caption_version}; clip {clip_version}",
            "notes": [
                SCORE_NOTE,
                f"label tables ready in {tables_s:.1f} s (kept in {tables})",
                "modes: best (default), fast, classic, negative (option mode)",
            ],
        }

    def infer(self, images: list[DecodedImage], options: dict[str, Any]) -> list[ImageResult]:
        if self.ci is None:
            raise RuntimeError("infer before load")
        mode = options.get("mode", "best")
        if mode not in MODES:
            raise ValueError(f"option mode must be one of {', '.join(MODES)}, got {mode!r}")
        return [self._one(img.rgb(), mode, options) for img in images]

    def _one(self, image: Any, mode: str, options: dict[str, Any]) -> ImageResult:
        ci = self.ci
        max_flavors = int(options.get("max_flavors", 32))
        t0 = time.perf_counter()
        caption = None if mode == "negative" else ci.generate_caption(image)
        if mode == "best":
            prompt = ci.interrogate(
                image, min_flavors=int(options.get("min_flavors", 8)), max_flavors=max_flavors, caption=caption
            )
        elif mode == "fast":
            prompt = ci.interrogate_fast(image, max_flavors=max_flavors, caption=caption)
        elif mode == "classic":
            prompt = ci.interrogate_classic(image, max_flavors=int(options.get("classic_flavors", 3)), caption=caption)
        else:
            prompt = ci.interrogate_negative(image, max_flavors=max_flavors)
        seconds = time.perf_counter() - t0
        caption, phrases = split_prompt(prompt, caption)
        features = ci.image_to_features(image)
        sims = ci.similarities(features, phrases) if phrases else []
        category = "negative" if mode == "negative" else "prompt"
        tags: list[Tag] = sorted(
            ({"name": p, "score": round(s, 6), "category": category} for p, s in zip(phrases, sims, strict=True)),
            key=lambda t: -t["score"],
        )
        raw = {
            "mode": mode,
            "prompt": prompt,
            "caption": caption,
            "phrases": phrases,
            "similarities": dict(zip(phrases, [round(s, 6) for s in sims], strict=True)),
            "prompt_similarity": round(ci.similarity(features, prompt), 6),
            "seconds": round(seconds, 4),
        }
        caption = caption.strip() if caption and caption.strip() else None
        if not tags and caption is None:
            return {"status": "no_tags", "tags": [], "caption": None, "raw": raw, "message": "empty prompt"}
        return {"status": "ok", "tags": tags, "caption": caption, "raw": raw}


def fingerprint_of(version: str) -> str:
    """A folder name for the label tables of one CLIP: tables of another CLIP never mix in."""
    import hashlib

    return "tables-" + hashlib.sha256(version.encode()).hexdigest()[:12]
