"""Phi-3.5-vision (microsoft/Phi-3.5-vision-instruct) through its own remote code, at a pinned commit.

Runs in the `legacy` env (transformers 4.48.3): the remote code calls Cache.get_max_length, removed in
4.49. Follows the model card: `AutoModelForCausalLM.from_pretrained(repo, trust_remote_code=True,
torch_dtype="auto", _attn_implementation=...)` -- "eager" off CUDA (flash_attention_2 needs the
flash_attn package and an Ampere+ GPU; load option attn_implementation) --,
`AutoProcessor.from_pretrained(repo, trust_remote_code=True, num_crops=N)` (the card: 16 for a
single image; load option num_crops), the prompt through the tokenizer's chat template with
`<|image_1|>`, greedy `generate(..., eos_token_id=tokenizer.eos_token_id)`, prompt tokens dropped,
`batch_decode(skip_special_tokens=True, clean_up_tokenization_spaces=False)`.

NOT checked against the upstream code: Phi-3.5-vision's remote code is not available offline; the
tests run this adapter against an interface stand-in written from the card (tests/tiny/phi3v.py).
"""

from __future__ import annotations

import time
from typing import Any

from runners._images import DecodedImage
from runners._remote import remote_code_source
from runners._vlm import TAG_SCORE_NOTE, generate_kwargs, prompt_runs_result, prompts_to_run
from runners.base import ImageResult, LoadResult, WeightsMissing, pick_torch_device
from schemas.protocol import LoadSpec


class Adapter:
    def __init__(self) -> None:
        self.model: Any = None
        self.processor: Any = None
        self.device = "cpu"

    def load(self, spec: LoadSpec) -> LoadResult:
        import torch
        from transformers import AutoModelForCausalLM, AutoProcessor

        options = spec["options"]
        source, kwargs = remote_code_source(spec)
        self.device = pick_torch_device(spec["device"])
        attn = options.get("attn_implementation") or (
            "flash_attention_2" if self.device == "cuda" and _has_flash_attn() else "eager"
        )
        dtype: Any = "auto" if spec["dtype"] == "auto" else getattr(torch, spec["dtype"])
        try:
            self.model = AutoModelForCausalLM.from_pretrained(
                source, torch_dtype=dtype, _attn_implementation=attn, **kwargs
            )
        except OSError as exc:
            raise WeightsMissing(
                f"{spec['hub_id']}@{spec['revision'][:12]} is not in the Hugging Face cache and "
                f"mltag is offline; run once online, or --weights {spec['name']}=PATH"
            ) from exc
        if self.device == "cpu" and self.model.dtype in (torch.float16,):
            self.model = self.model.float()  # half precision matmuls are slow or missing on CPU
        self.model.to(self.device).eval()
        num_crops = int(options.get("num_crops", 16))
        self.processor = AutoProcessor.from_pretrained(source, num_crops=num_crops, **kwargs)
        return {
            "device": self.device,
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "model_version": spec["local_path"] or spec["revision"],
            "notes": [
                TAG_SCORE_NOTE,
                "remote code: the repository's own Python files at the pinned revision",
                f"attention {attn}; num_crops {num_crops}; greedy",
            ],
        }

    def infer(self, images: list[DecodedImage], options: dict[str, Any]) -> list[ImageResult]:
        if self.model is None:
            raise RuntimeError("infer before load")
        prompts = prompts_to_run(options)
        kwargs = generate_kwargs(options)
        out = []
        for image in images:
            rgb = image.rgb()
            runs = {task: self._generate(rgb, prompt, kwargs) for task, prompt in prompts.items()}
            out.append(prompt_runs_result(runs, kwargs, 1))
        return out

    def _generate(self, image: Any, prompt: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        import torch

        tokenizer = self.processor.tokenizer
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "<|image_1|>\n" + prompt}], tokenize=False, add_generation_prompt=True
        )
        inputs = self.processor(text, [image], return_tensors="pt").to(self.device)
        t0 = time.perf_counter()
        with torch.inference_mode():
            ids = self.model.generate(**inputs, **kwargs, eos_token_id=tokenizer.eos_token_id)
        seconds = time.perf_counter() - t0
        new = ids[:, inputs["input_ids"].shape[1] :]
        decoded = self.processor.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)[0]
        count = int(new.shape[1])
        return {
            "prompt": prompt,
            "text": decoded,
            "prompt_tokens": int(inputs["input_ids"].shape[1]),
            "new_tokens": count,
            "seconds": round(seconds, 4),
            "tokens_per_s": round(count / seconds, 2) if seconds > 0 else None,
        }


def _has_flash_attn() -> bool:
    import importlib.util

    return importlib.util.find_spec("flash_attn") is not None
