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

from runners._vlm import GenerativeAdapter
from runners.base import LoadResult
from schemas.protocol import LoadSpec


class Adapter(GenerativeAdapter):
    model_class = "BlipForConditionalGeneration"
    supports_batching = True
    allow_empty_prompt = True
    no_tags_prompt = (
        "{model} cannot answer a tags prompt: BLIP is a captioner without instruction following (its "
        "text prompt is a caption prefix that it continues, not a question it answers), so ask={ask!r} "
        "has no meaning for it. Use ask=caption (the default; tags are extracted from the caption): "
        "--ask tags/both leaves BLIP captioning, and --option {model}.ask=caption overrides a "
        "--option ask=... meant for the other models"
    )
    score_note = "no tags prompt (BLIP cannot answer one): its tags are the ones extracted from the caption"
    notes = (
        'prompt = a caption prefix that BLIP continues ("" = unconditional captioning); the caption is the '
        "continuation only (raw.generations keeps the prompt); prompt_tokens = [DEC] + prefix tokens (the "
        "image enters by cross-attention)",
    )

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
