"""MiniCPM-V 4.5 (openbmb/MiniCPM-V-4_5) through its own remote code, at a pinned commit.

Runs in the `tf4` env: the maintainers tested transformers 4.55.0; 4.56+ and 5.x are reported broken.
Follows the model card: `AutoModel.from_pretrained(repo, trust_remote_code=True,
attn_implementation="sdpa", torch_dtype=bfloat16)` (the card: sdpa or flash_attention_2, no eager),
`AutoTokenizer.from_pretrained(repo, trust_remote_code=True)`, then per image and prompt
`model.chat(msgs=[{"role": "user", "content": [image, prompt]}], tokenizer=tokenizer,
enable_thinking=False)`. mltag passes `sampling=False` (the card's chat samples by default) so the
same image gives the same text, and `max_new_tokens`. Thinking stays off for comparable captions.

NOT checked against the upstream code: the 4.5 remote code is not available offline; the tests run
this adapter against an interface stand-in written from the documented API (tests/tiny/minicpmv.py).

`--weights minicpm-v45=PATH`: a folder holding the repository (its *.py files, config, weights).
"""

from __future__ import annotations

import time
from typing import Any

from runners._images import DecodedImage
from runners._remote import remote_code_source
from runners._vlm import TAG_SCORE_NOTE, dtype_for, prompt_runs_result, prompts_to_run
from runners.base import ImageResult, LoadResult, WeightsMissing, pick_torch_device
from schemas.protocol import LoadSpec

DEFAULT_MAX_NEW_TOKENS = 384


class Adapter:
    def __init__(self) -> None:
        self.model: Any = None
        self.tokenizer: Any = None

    def load(self, spec: LoadSpec) -> LoadResult:
        from transformers import AutoModel, AutoTokenizer

        source, kwargs = remote_code_source(spec)
        device = pick_torch_device(spec["device"])
        dtype = dtype_for(spec, device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        except OSError as exc:
            raise WeightsMissing(
                f"{spec['hub_id']}@{spec['revision'][:12]} is not in the Hugging Face cache and "
                f"mltag is offline; run once online, or --weights {spec['name']}=PATH"
            ) from exc
        attn = spec["options"].get("attn_implementation", "sdpa")
        self.model = AutoModel.from_pretrained(source, attn_implementation=attn, torch_dtype=dtype, **kwargs)
        self.model.to(device).eval()
        version = spec["local_path"] or spec["revision"]
        return {
            "device": device,
            "dtype": str(dtype).removeprefix("torch."),
            "model_version": version,
            "notes": [
                TAG_SCORE_NOTE,
                "remote code: the repository's own Python files at the pinned revision",
                f"model.chat(..., enable_thinking=False, sampling=False); attention {attn}",
            ],
        }

    def infer(self, images: list[DecodedImage], options: dict[str, Any]) -> list[ImageResult]:
        if self.model is None:
            raise RuntimeError("infer before load")
        prompts = prompts_to_run(options)
        max_new = options.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
        if isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 1:
            raise ValueError(f"option max_new_tokens must be an integer >= 1, got {max_new!r}")
        settings: dict[str, Any] = {"sampling": False, "max_new_tokens": max_new, "enable_thinking": False}
        if options.get("min_new_tokens"):
            settings["min_new_tokens"] = options["min_new_tokens"]
        out = []
        for image in images:
            rgb = image.rgb()
            runs = {}
            for task, prompt in prompts.items():
                t0 = time.perf_counter()
                text = self.model.chat(
                    msgs=[{"role": "user", "content": [rgb, prompt]}], tokenizer=self.tokenizer, **settings
                )
                runs[task] = {"prompt": prompt, "text": text, "seconds": round(time.perf_counter() - t0, 4)}
            out.append(prompt_runs_result(runs, settings, 1))
        return out
