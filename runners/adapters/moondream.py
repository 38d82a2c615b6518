"""Moondream2 (vikhyatk/moondream2 at a pinned release tag) through its own remote code.

Runs in the `tf4` env (transformers 4.x: the 2025 revisions break on 5.x). Loading follows the
model card: `AutoModelForCausalLM.from_pretrained(hub_id, revision=<tag>, trust_remote_code=True)`,
allowed by runners/_remote.py only because envs/moondream2/model.toml says `remote_code = true`.
One upstream quirk is handled here: `HfConfig.__init__` drops the `config` dict that config.json
holds, so it is read from config.json and passed back (`config=`); for the released checkpoint it
is empty (the full-size defaults), for other checkpoints it carries their sizes.

Per image the image is encoded once (`encode_image`), then `caption(length=...)` gives the caption
and, with ask = tags | both, `query(tags_prompt)` a comma-separated tag list (scores estimated by
position, as for every captioner). Option `detect` (a list of labels) adds `detect()` boxes to raw.
Sampling is off (temperature 0, greedy), so the same image gives the same text. Moondream's API
reports no token counts; raw keeps the texts exactly as returned, with timings.

`--weights moondream2=PATH`: PATH is a Hugging Face hub cache folder holding
models--vikhyatk--moondream2 (at the pinned tag) and models--moondream--starmie-v1 (the tokenizer
the code fetches by name), or the pinned snapshot folder inside such a cache (the orchestrator
gives the snapshot folder either way; its cache root is used). A folder copied out of its cache
cannot work: transformers copies only a file's direct relative imports from a local folder, and
the upstream code imports deeper (layers.py, rope.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from runners._images import DecodedImage
from runners._remote import remote_code_source, use_hub_cache
from runners._vlm import TAG_SCORE_NOTE, prompt_runs_result, prompts_to_run
from runners.base import ImageResult, LoadResult, WeightsMissing, pick_torch_device
from schemas.protocol import LoadSpec

LENGTHS = ("short", "normal", "long")
DEFAULT_MAX_TOKENS = 256
REPO_FOLDER = "models--vikhyatk--moondream2"


def settings(options: dict[str, Any]) -> dict[str, Any]:
    """Moondream's sampling settings: greedy; `variant` must be present (the code indexes it)."""
    max_tokens = options.get("max_new_tokens", DEFAULT_MAX_TOKENS)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"option max_new_tokens must be an integer >= 1, got {max_tokens!r}")
    return {"max_tokens": max_tokens, "temperature": 0, "variant": None}


def caption_length(options: dict[str, Any]) -> str:
    length: str = options.get("length", "normal")
    if length not in LENGTHS:
        raise ValueError(f"option length must be one of {', '.join(LENGTHS)}, got {length!r}")
    return length


class Adapter:
    def __init__(self) -> None:
        self.model: Any = None
        self.device = "cpu"

    def load(self, spec: LoadSpec) -> LoadResult:
        local_path = spec.get("local_path")
        local = Path(local_path).expanduser() if local_path else None
        if local is not None:
            # The orchestrator gives a snapshot folder (a cache root given to --weights is resolved to
            # the pinned revision's snapshot, orchestrator/models/loadspec.py): its cache root is 3 up.
            if local.parent.name == "snapshots" and local.parent.parent.name == REPO_FOLDER:
                local = local.parents[2]
            if not (local / REPO_FOLDER).is_dir():
                raise WeightsMissing(
                    f"{local} is not in a Hugging Face hub cache holding {REPO_FOLDER} "
                    "(Moondream2's remote code loads only from a hub cache layout: a snapshot "
                    "folder copied out of its cache cannot work); point --weights at the cache "
                    "root (HF_HUB_CACHE) or at its snapshot folder"
                )
            use_hub_cache(local)
            spec = {**spec, "local_path": None}  # the pinned revision, read from that cache
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM
        from transformers.utils import cached_file

        source, kwargs = remote_code_source(spec)
        self.device = pick_torch_device(spec["device"])
        try:
            config = AutoConfig.from_pretrained(source, **kwargs)
        except OSError as exc:
            raise WeightsMissing(
                f"{spec['hub_id']}@{spec['revision']} is not in the Hugging Face cache and mltag "
                f"is offline; run once online, or --weights {spec['name']}=<hub cache folder>"
            ) from exc
        path = cached_file(source, "config.json", **{k: v for k, v in kwargs.items() if k != "trust_remote_code"})
        config.config = json.loads(Path(path).read_text()).get("config") or {}
        load_kwargs: dict[str, Any] = {}
        if spec["dtype"] != "auto":
            load_kwargs["torch_dtype"] = getattr(torch, spec["dtype"])
        self.model = AutoModelForCausalLM.from_pretrained(source, config=config, **kwargs, **load_kwargs)
        self.model.to(self.device).eval()
        dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        version = spec["revision"] + (f" from the hub cache {local}" if local else "")
        return {
            "device": self.device,
            "dtype": dtype,
            "model_version": version,
            "notes": [
                TAG_SCORE_NOTE,
                "remote code: the repository's own Python files at the pinned revision",
                "greedy (temperature 0); no token counts (Moondream's API gives none)",
            ],
        }

    def infer(self, images: list[DecodedImage], options: dict[str, Any]) -> list[ImageResult]:
        if self.model is None:
            raise RuntimeError("infer before load")
        # No `prompt` (the default): Moondream's own caption(length=...); a prompt (--prompt) goes to query().
        prompts = prompts_to_run({**options, "prompt": options.get("prompt") or "-"})
        if not options.get("prompt") and "caption" in prompts:
            prompts["caption"] = ""
        sampling, length = settings(options), caption_length(options)
        labels = options.get("detect") or []
        if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
            raise ValueError(f"option detect must be a list of labels, got {labels!r}")
        return [self._one(img, prompts, sampling, length, labels) for img in images]

    def _one(
        self, image: DecodedImage, prompts: dict[str, str], sampling: dict[str, Any], length: str, labels: list[str]
    ) -> ImageResult:
        import torch

        runs: dict[str, dict[str, Any]] = {}
        with torch.inference_mode():
            t0 = time.perf_counter()
            encoded = self.model.encode_image(image.rgb())
            encode_s = time.perf_counter() - t0
            if "caption" in prompts:
                t0 = time.perf_counter()
                if prompts["caption"]:
                    text, asked = (
                        self.model.query(encoded, prompts["caption"], settings=sampling)["answer"],
                        prompts["caption"],
                    )
                else:
                    text, asked = (
                        self.model.caption(encoded, length=length, settings=sampling)["caption"],
                        f"caption(length={length!r})",
                    )
                runs["caption"] = {"prompt": asked, "text": text, "seconds": round(time.perf_counter() - t0, 4)}
            if "tags" in prompts:
                t0 = time.perf_counter()
                text = self.model.query(encoded, prompts["tags"], settings=sampling)["answer"]
                runs["tags"] = {"prompt": prompts["tags"], "text": text, "seconds": round(time.perf_counter() - t0, 4)}
            detections = {
                label: self.model.detect(encoded, label, settings={"variant": None})["objects"] for label in labels
            }
        result = prompt_runs_result(runs, {**sampling, "length": length}, 1)
        result["raw"]["encode_s"] = round(encode_s, 4)
        if labels:
            result["raw"]["detections"] = detections
        return result
