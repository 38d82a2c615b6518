"""BLIP image captioning (Salesforce/blip-image-captioning-large), native transformers.

Runs in the `modern` env through runners/_vlm.py's GenerativeAdapter. BLIP is a captioner, not
an instruction-following model: its text decoder continues a text, it does not answer one. The
model card's two recipes, both supported through the `prompt` option:
    prompt ""            unconditional captioning, the card's `processor(images=image)` (the default)
    prompt "a photo of"  conditional captioning: the text is a prefix that the caption continues
The processor wraps the text in [CLS] ... [SEP]; BLIP's generate() swaps [CLS] for the decoder's
bos token [DEC] and drops the [SEP] (an empty prompt leaves [DEC] alone, which is exactly the
unconditional recipe), and its output repeats [DEC] + prefix before the new tokens. So:
    new_tokens / text  only what the model generated after the prefix (the closing [SEP] counts
                       as generated, like an EOS elsewhere); the text is exactly that, decoded
    prompt_tokens      what the text decoder was fed: [DEC] + the prefix's tokens. The image
                       (577 patch embeddings at 384 px) enters by cross-attention, not as tokens.
    caption            the continuation only, NOT prefix + continuation. Decided so because the
                       caption is what the model said (as for every captioner here), and because
                       a prefix's words ("photo", "picture") would otherwise become tags of every
                       image when the orchestrator extracts tags from captions. prompt + " " +
                       text rebuilds the card's full sentence (unless the continuation starts
                       mid-word, a WordPiece "##" piece); raw.generations has both.
Tags: BLIP cannot answer a tags prompt (a "list the objects" prefix is continued as a caption,
not answered), so ask = "tags" or "both" is an error that names the fix; the orchestrator's tags
extracted from the caption are BLIP's tags.

Batching: every image of a call gets the same prefix (rows of equal length, no padding) and the
processor resizes every image to the same square; tests check a batch equals one-by-one runs.
"""

from __future__ import annotations

from typing import Any

from runners._images import DecodedImage
from runners._vlm import ASK, GenerativeAdapter, build_result, generate_kwargs
from runners.base import ImageResult, LoadResult
from schemas.protocol import LoadSpec

NO_TAGS_PROMPT = ("{model} cannot answer a tags prompt: BLIP is a captioner without instruction following (its text "
                  "prompt is a caption prefix that it continues, not a question it answers), so ask={ask!r} has no "
                  "meaning for it. Use ask=caption (the default; tags are extracted from the caption), e.g. "
                  "--option {model}.ask=caption when --ask applies to several models")


def caption_prompt(options: dict[str, Any]) -> str:
    """The caption prompt, where "" (or absent) means unconditional captioning."""
    prompt = options.get("prompt", "")
    if not isinstance(prompt, str):
        raise ValueError(f"option prompt must be a string (\"\" for unconditional captioning), got {prompt!r}")
    return prompt.strip()


def prompts_allowing_empty(options: dict[str, Any], tags_allowed: bool, model: str) -> dict[str, str]:
    """Like _vlm.prompts_to_run, but the caption prompt may be empty (unconditional captioning).

    With `tags_allowed` false, asking for tags is an error naming the fix (see NO_TAGS_PROMPT).
    """
    ask = options.get("ask", "caption")
    if ask not in ASK:
        raise ValueError(f"option ask must be one of {', '.join(ASK)}, got {ask!r}")
    if ask != "caption" and not tags_allowed:
        raise ValueError(NO_TAGS_PROMPT.format(model=model, ask=ask))
    prompts: dict[str, str] = {}
    if ask in ("caption", "both"):
        prompts["caption"] = caption_prompt(options)
    if ask in ("tags", "both"):
        tags = options.get("tags_prompt")
        if not isinstance(tags, str) or not tags.strip():
            raise ValueError(f"option tags_prompt must be a non-empty string (set it in model.toml [infer] or with "
                             f"--tags-prompt), got {tags!r}")
        prompts["tags"] = tags.strip()
    return prompts


class PrefixAdapter(GenerativeAdapter):
    """A GenerativeAdapter whose caption prompt may be empty: unconditional captioning (BLIP, BLIP-2).

    The base's infer() calls _vlm.prompts_to_run(), which requires a non-empty prompt; this is
    the same loop with the `prompts` hook instead. (Base change suggested to the lead: make
    prompts_to_run a method hook of GenerativeAdapter, with an `allow_empty_prompt` flag.)
    """

    tags_allowed = True
    model_label = "this model"

    def prompts(self, options: dict[str, Any]) -> dict[str, str]:
        return prompts_allowing_empty(options, self.tags_allowed, self.model_label)

    def load(self, spec: LoadSpec) -> LoadResult:
        self.model_label = spec["name"]  # named in error messages
        return super().load(spec)

    def infer(self, images: list[DecodedImage], options: dict[str, Any]) -> list[ImageResult]:
        if self.model is None:
            raise RuntimeError("infer before load")
        prompts = self.prompts(options)
        kwargs = generate_kwargs(options)
        step = len(images) if self.supports_batching else 1
        out: list[ImageResult] = []
        for i in range(0, len(images), step):
            chunk = [img.rgb() for img in images[i:i + step]]
            runs: list[dict[str, dict[str, Any]]] = [{} for _ in chunk]
            for task, prompt in prompts.items():
                for per_image, run in zip(runs, self.generate(chunk, prompt, kwargs), strict=True):
                    per_image[task] = run
            out.extend(build_result(r, kwargs, len(chunk)) for r in runs)
        return out


class Adapter(PrefixAdapter):
    model_class = "BlipForConditionalGeneration"
    supports_batching = True
    tags_allowed = False
    score_note = "no tags prompt (BLIP cannot answer one): its tags are the ones extracted from the caption"
    notes = ("prompt = a caption prefix that BLIP continues (\"\" = unconditional captioning); the caption is the "
             "continuation only (raw.generations keeps the prompt); prompt_tokens = [DEC] + prefix tokens (the "
             "image enters by cross-attention)",)

    def load(self, spec: LoadSpec) -> LoadResult:
        info = super().load(spec)
        # BLIP's generate() stops on the text config's sep token, not on its eos_token_id (2, an unused
        # token in the real vocab), and pads with pad_token_id: tell the shared trimming the same.
        text = self.model.config.text_config
        self.model.generation_config.eos_token_id = text.sep_token_id
        self.model.generation_config.pad_token_id = text.pad_token_id
        return info

    def prepare(self, images: list[Any], prompt: str) -> Any:
        # One prefix per call: the rows have the same length and need no padding (they must not: with
        # padding, generate()'s "first column is [CLS], last is [SEP]" would not hold for every row).
        # text "" tokenizes to [CLS] [SEP], which generate() turns into [DEC]: the unconditional recipe.
        return self.processor(images=images, text=[prompt] * len(images), return_tensors="pt")

    def new_token_ids(self, ids: Any, inputs: Any) -> list[list[int]]:
        """The output is [DEC] + prefix (the input less its [SEP]) + new tokens: keep the new ones."""
        start = int(inputs["input_ids"].shape[1]) - 1
        return [row[start:].tolist() for row in ids]

    def generate(self, images: list[Any], prompt: str, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
        runs = super().generate(images, prompt, kwargs)
        for run in runs:  # the base counts the processor's tokens; generate() dropped the [SEP]
            run["prompt_tokens"] -= 1
        return runs
