"""What every prompt-driven captioning model shares: prompts, generation settings, stats, checks.

Over 350 lines on purpose: it is the one place ten captioning families share (each family file stays
a few dozen lines); splitting prompts from generation would split one call path in two.

A family adapter (runners/adapters/qwen_vl.py, runners/adapters/blip.py, ...) subclasses `GenerativeAdapter` and
supplies only what differs between families:
    model_class       the transformers class name (native classes only, never remote code)
    prepare(images, prompt)     -> processor inputs (a BatchFeature) for one generate() call
    new_token_ids(ids, inputs)  -> per row, the token ids the model generated (no prompt)
    check_checkpoint(config, where, spec)  refuse a wrong checkpoint from config.json, before the weights
and, when the family can batch with left padding, `supports_batching = True`. Captioners that
are not instruction-following (BLIP, BLIP-2) set `allow_empty_prompt` (prompt "" = unconditional
captioning), and `no_tags_prompt` (the error text) when they cannot answer a tags prompt at all;
`prompts(options)` is the hook for rewriting prompts (BLIP-2's "Question: ... Answer:").

Infer options (model.toml [infer], `--prompt`, `--tags-prompt`, `--ask`, `--option KEY=V`):
    ask              "caption" | "tags" | "both": which prompts run (model.toml says the default)
    prompt           asks for a detailed description -> the caption
    tags_prompt      asks for a comma-separated tag list -> tags (estimated scores, by position)
    max_new_tokens, min_new_tokens, num_beams, repetition_penalty, no_repeat_ngram_size
Generation is greedy (do_sample false): the same image gives the same output, which a
comparison needs. Load options (model.toml [load], `--quantize`):
    dtype            {cpu = "...", cuda = "...", mps = "..."}: the dtype per device when --dtype auto
    quantize         4 | 8: bitsandbytes via quantization_config, CUDA only

Output per image: `caption` (the caption text, stripped, when usable), `tags` (from the tags
prompt; the orchestrator adds tags extracted from the caption), and `raw` with, per prompt run,
the prompt, the text exactly as decoded, prompt/new token counts, seconds and tokens/s, plus the
generate() settings and the batch size. Empty output, output that only repeats the prompt, and
repetition loops are `no_tags` with the reason (their text stays in raw), never a caption.
torch and transformers are imported inside methods: the pure functions here run without them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from runners._images import DecodedImage
from runners._text import caption_words, looks_degenerate, parse_tag_list
from runners.base import (
    DecodeNeed,
    ImageResult,
    LoadResult,
    fingerprint,
    pick_torch_device,
    pick_torch_dtype,
    processor_size_need,
    require_config,
    weights_dir,
)
from schemas.protocol import LoadSpec

ASK = ("caption", "tags", "both")
DEVICES = ("cpu", "cuda", "mps")
DEFAULT_MAX_NEW_TOKENS = 256
WEIGHT_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.jinja", "*.tiktoken"]
TAG_SCORE_NOTE = (
    "scores of tags from the tags prompt are estimates, not probabilities: the first listed tag "
    "scores 0.9, the last 0.5 (0.9 - 0.4 x position / count)"
)


# -- pure functions (no torch) ------------------------------------------------------------------
def _int(options: dict[str, Any], key: str, default: int | None, minimum: int = 1) -> int | None:
    value = options.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"option {key} must be an integer >= {minimum}, got {value!r}")
    return value


def _text(options: dict[str, Any], key: str) -> str:
    value = options.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"option {key} must be a non-empty string (set it in model.toml [infer] or with "
            f"--{key.replace('_', '-')}), got {value!r}"
        )
    return value


def for_device(options: dict[str, Any], key: str, device: str, defaults: dict[str, Any], what: str = "option") -> Any:
    """An option given once or as a table per device ({cpu = 1, cuda = 12}, like [load] dtype)."""
    value = options.get(key, defaults)
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(DEVICES))
        if unknown:
            raise ValueError(f"{what} {key}: unknown device(s) {', '.join(unknown)} (use {', '.join(DEVICES)})")
        value = value.get(device, defaults[device])
    return value


def prompts_to_run(options: dict[str, Any], allow_empty: bool = False) -> dict[str, str]:
    """{"caption": prompt, "tags": tags prompt}, restricted to what option `ask` selects.

    With `allow_empty`, the caption prompt may be "" or absent: unconditional captioning (BLIP,
    BLIP-2), where the text is a prefix the model continues rather than a question.
    """
    ask = options.get("ask", "caption")
    if ask not in ASK:
        raise ValueError(f"option ask must be one of {', '.join(ASK)}, got {ask!r}")
    prompts: dict[str, str] = {}
    if ask in ("caption", "both"):
        prompt = options.get("prompt", "") if allow_empty else _text(options, "prompt")
        if not isinstance(prompt, str):
            raise ValueError(f'option prompt must be a string ("" for unconditional captioning), got {prompt!r}')
        prompts["caption"] = prompt.strip()
    if ask in ("tags", "both"):
        prompts["tags"] = _text(options, "tags_prompt").strip()
    return prompts


def generate_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    """generate() settings from infer options: greedy, bounded, with the repetition guards asked for."""
    kwargs: dict[str, Any] = {
        "do_sample": False,
        "max_new_tokens": _int(options, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS),
        "num_beams": _int(options, "num_beams", 1),
    }
    min_new = _int(options, "min_new_tokens", None)
    if min_new is not None:
        kwargs["min_new_tokens"] = min_new
    penalty = options.get("repetition_penalty")
    if penalty is not None:
        if isinstance(penalty, bool) or not isinstance(penalty, int | float) or penalty <= 0:
            raise ValueError(f"option repetition_penalty must be a positive number, got {penalty!r}")
        kwargs["repetition_penalty"] = float(penalty)
    ngram = _int(options, "no_repeat_ngram_size", None, minimum=0)
    if ngram:
        kwargs["no_repeat_ngram_size"] = ngram
    return kwargs


def echoes_prompt(text: str, prompt: str) -> bool:
    """True when the output's words are only (a stretch of) the prompt's words."""
    said, asked = caption_words(text), caption_words(prompt)
    return bool(said) and f" {' '.join(said)} " in f" {' '.join(asked)} "


def unusable(text: str, prompt: str) -> str | None:
    """Why a generated text is not usable (empty, prompt echo, loop), else None."""
    reason = looks_degenerate(text)
    if reason is None and echoes_prompt(text, prompt):
        reason = "the output only repeats the prompt"
    return reason


def prompt_runs_result(runs: dict[str, dict[str, Any]], kwargs: dict[str, Any], batch_size: int) -> ImageResult:
    """One image's result from its prompt runs ({"caption"|"tags": {"prompt", "text", counts...}})."""
    raw: dict[str, Any] = {"generations": runs, "generate": kwargs, "batch_size": batch_size}
    caption, tags, problems = None, [], []
    if "caption" in runs:
        run = runs["caption"]
        reason = unusable(run["text"], run["prompt"])
        if reason is None:
            caption = run["text"].strip()
        else:
            problems.append(f"caption: {reason}")
    if "tags" in runs:
        run = runs["tags"]
        reason = unusable(run["text"], run["prompt"])
        tags = parse_tag_list(run["text"]) if reason is None else []
        if reason is None and not tags:
            reason = "no tags could be read from the output"
        if reason:
            problems.append(f"tags: {reason}")
    result: ImageResult = {
        "status": "ok" if caption or tags else "no_tags",
        "caption": caption,
        "tags": tags,
        "raw": raw,
    }
    if problems:
        result["message"] = "; ".join(problems) + "; raw.generations has the output"
    return result


def checkpoint_config(spec: LoadSpec) -> dict[str, Any]:
    """The checkpoint's config.json, fetched alone (one small file from the Hub), so that a wrong
    checkpoint fails with the fix named before gigabytes of weights are downloaded."""
    path = require_config(weights_dir(spec, allow_patterns=["config.json"]), spec)
    config: dict[str, Any] = json.loads(path.read_text())
    return config


def dtype_for(spec: LoadSpec, device: str) -> Any:
    """--dtype wins; with auto, model.toml's [load] dtype table for this device, else the default rule."""
    table = spec["options"].get("dtype") or {}
    requested = spec["dtype"]
    if requested == "auto" and isinstance(table, dict) and table.get(device):
        requested = table[device]
    return pick_torch_dtype(requested, device)


def quantization(spec: LoadSpec, device: str) -> Any:
    """A BitsAndBytesConfig for `quantize` 4 or 8 on CUDA; a clear error anywhere else."""
    bits = spec["options"].get("quantize")
    if bits in (None, 0, False):
        return None
    if bits not in (4, 8):
        raise ValueError(f"--quantize must be 4 or 8, got {bits!r}")
    if device != "cuda":
        raise RuntimeError(
            f"--quantize {bits} is not available on {device}: bitsandbytes quantization needs an "
            f"NVIDIA GPU (CUDA); drop --quantize, or run with --device cuda on a GPU machine"
        )
    from transformers import BitsAndBytesConfig

    if bits == 4:
        import torch

        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


# -- the adapter -------------------------------------------------------------------------------
class GenerativeAdapter:
    """load/infer for a native transformers image-text-to-text model; families fill in the hooks."""

    model_class = ""  # e.g. "Qwen2_5_VLForConditionalGeneration"
    supports_batching = False  # True when prepare() pads a batch on the left
    allow_empty_prompt = False  # True: prompt "" is unconditional captioning (BLIP, BLIP-2)
    no_tags_prompt = ""  # set: why the family cannot answer a tags prompt ({model}, {ask})
    notes: tuple[str, ...] = ()  # family facts shown with the load info
    score_note = TAG_SCORE_NOTE

    def __init__(self) -> None:
        self.model: Any = None
        self.processor: Any = None
        self.device = "cpu"
        self.dtype: Any = None
        self.name = "this model"  # the registry name, for error messages

    # hooks ---------------------------------------------------------------------------------------
    def load_processor(self, folder: Path, options: dict[str, Any]) -> Any:
        from transformers import AutoProcessor

        return AutoProcessor.from_pretrained(folder)

    def check_checkpoint(self, config: dict[str, Any], where: str, spec: LoadSpec) -> None:
        """Refuse a checkpoint this family cannot run, from its config.json (`where`: the local path or
        hub id), before its weights are fetched. Default: any."""

    def prompts(self, options: dict[str, Any]) -> dict[str, str]:
        """The prompt runs for one infer call ({"caption": ..., "tags": ...})."""
        ask = options.get("ask", "caption")
        if self.no_tags_prompt and ask in ("tags", "both"):
            raise ValueError(self.no_tags_prompt.format(model=self.name, ask=ask))
        return prompts_to_run(options, self.allow_empty_prompt)

    def prepare(self, images: list[Any], prompt: str) -> Any:
        """Processor inputs for `images` (PIL, RGB) all asked `prompt`."""
        raise NotImplementedError

    def decode_need(self, width: int, height: int, options: dict[str, Any]) -> DecodeNeed:
        """Default: a processor that resizes every image to one {height, width} (BLIP, BLIP-2,
        PaliGemma); any other resize rule gets the full image (runners/base.py)."""
        return processor_size_need(getattr(self.processor.image_processor, "size", None))

    def new_token_ids(self, ids: Any, inputs: Any) -> list[list[int]]:
        """Decoder-only default: generate() returns prompt + new tokens; keep what follows the prompt."""
        start = int(inputs["input_ids"].shape[1])
        return [row[start:].tolist() for row in ids]

    # load ----------------------------------------------------------------------------------------
    def load(self, spec: LoadSpec) -> LoadResult:
        import transformers

        self.name = spec["name"]
        self.check_checkpoint(checkpoint_config(spec), str(spec.get("local_path") or spec["hub_id"]), spec)
        folder = weights_dir(spec, allow_patterns=WEIGHT_PATTERNS)
        self.device = pick_torch_device(spec["device"])
        self.dtype = dtype_for(spec, self.device)
        quant = quantization(spec, self.device)
        cls = getattr(transformers, self.model_class)
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if quant is not None:  # bitsandbytes places the weights itself
            kwargs.update(quantization_config=quant, device_map={"": 0})
        self.model = cls.from_pretrained(folder, **kwargs).eval()
        if quant is None:
            self.model.to(self.device)
        self.processor = self.load_processor(folder, spec["options"])
        dtype = str(self.dtype).removeprefix("torch.")
        notes = [self.score_note, *self.notes]
        if quant is not None:
            notes.append(f"quantized to {spec['options']['quantize']} bits (bitsandbytes)")
        notes.append(
            "batching: "
            + ("left padding, --batch-size N" if self.supports_batching else "one image per generate() call")
        )
        return {"device": self.device, "dtype": dtype, "model_version": self._version(spec, folder), "notes": notes}

    def _version(self, spec: LoadSpec, folder: Path) -> str:
        local = spec.get("local_path")
        if not local:
            # An unpinned revision ("main"): the snapshot folder's name is the commit actually loaded.
            return spec["revision"] if len(spec["revision"]) == 40 else f"{spec['revision']} = {folder.name}"
        files = sorted(folder.glob("*.safetensors"))
        return f"{local} (weights {fingerprint(*files)})" if files else local

    # infer ---------------------------------------------------------------------------------------
    def infer(self, images: list[DecodedImage], options: dict[str, Any]) -> list[ImageResult]:
        if self.model is None:
            raise RuntimeError("infer before load")
        if options.get("judge"):
            return self.vision_judge(images, options)
        prompts = self.prompts(options)
        kwargs = generate_kwargs(options)
        step = len(images) if self.supports_batching else 1
        out: list[ImageResult] = []
        for i in range(0, len(images), step):
            chunk = [img.rgb() for img in images[i : i + step]]
            runs: list[dict[str, dict[str, Any]]] = [{} for _ in chunk]
            for task, prompt in prompts.items():
                for per_image, run in zip(runs, self.generate(chunk, prompt, kwargs), strict=True):
                    per_image[task] = run
            out.extend(prompt_runs_result(r, kwargs, len(chunk)) for r in runs)
        return out

    def vision_judge(self, images: list[DecodedImage], options: dict[str, Any]) -> list[ImageResult]:
        """As the judge (option `judge`, set by `--judge CAPTIONER`): per image, the photo and the other
        models' outputs (ImageIn.context) in one prompt; the answer parsed as the text judge's
        (runners/_merge.py, as the text judge's), what it adds by looking kept and listed in raw.added_tags."""
        from runners._merge import DEFAULT_MAX_TAGS_PER_MODEL, VISION_JUDGE_PROMPT, format_outputs, merged_result

        instruction = options.get("judge_prompt") or VISION_JUDGE_PROMPT
        max_tags = _int(options, "max_tags_per_model", DEFAULT_MAX_TAGS_PER_MODEL)
        kwargs = generate_kwargs(options)
        out: list[ImageResult] = []
        for image in images:
            context = image.context or {}
            if image.pil is None:
                out.append(
                    {
                        "status": "error",
                        "caption": None,
                        "tags": [],
                        "raw": {"inputs": []},
                        "message": "the photo could not be read for the judge (moved or unreadable since it "
                        "was analysed): run `mltag judge` where the file is",
                    }
                )
                continue
            prompt = f"{instruction}\n\n{format_outputs(context, max_tags or DEFAULT_MAX_TAGS_PER_MODEL)}"
            [run] = self.generate([image.rgb()], prompt, kwargs)
            result = merged_result(context, instruction, run, saw_image=True)
            result["raw"]["generate"] = kwargs
            out.append(result)
        return out

    def generate(self, images: list[Any], prompt: str, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        """One generate() call over `images`: per image, the prompt, decoded text and token stats."""
        import torch

        inputs = self.prepare(images, prompt).to(self.device)
        if self.dtype is not None and "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        t0 = time.perf_counter()
        with torch.inference_mode():
            ids = self.model.generate(**inputs, **kwargs)
        seconds = time.perf_counter() - t0
        new_ids = [self._trim(row) for row in self.new_token_ids(ids, inputs)]
        texts = self.processor.batch_decode(new_ids, skip_special_tokens=True)
        mask = inputs.get("attention_mask")
        prompt_tokens = (
            [int(m.sum()) for m in mask] if mask is not None else [int(inputs["input_ids"].shape[1])] * len(images)
        )
        return [
            {
                "prompt": prompt,
                "text": text,
                "prompt_tokens": p,
                "new_tokens": len(new),
                "seconds": round(seconds, 4),
                "tokens_per_s": round(len(new) / seconds, 2) if seconds > 0 else None,
            }
            for text, new, p in zip(texts, new_ids, prompt_tokens, strict=True)
        ]

    def _trim(self, ids: list[int]) -> list[int]:
        """Drop the padding a batch adds after a row's end (an EOS stays: it was generated)."""
        pad = getattr(self.model.generation_config, "pad_token_id", None)
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        for i, token in enumerate(ids):
            if token in eos_ids:
                return ids[: i + 1]
        while ids and pad is not None and ids[-1] == pad:
            ids = ids[:-1]
        return ids
