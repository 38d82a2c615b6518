"""PaliGemma and PaliGemma 2 (native transformers), and fine-tunes of them such as the long captioners.

Runs in the `modern` env through runners/_vlm.py's GenerativeAdapter. PaliGemma is not a chat model:
the prompt is a task string (`caption en`, `describe en`, `answer en <question>`, ...), and the
model card's recipe is `processor(text=prompt, images=image)`, greedy `generate`, then decode only
the tokens after the prompt. PaliGemmaProcessor (transformers 5.23) lays the input out as
`<image>` x image_seq_length + `<bos>` + prompt + "\\n"; a text without a leading `<image>` still
works but logs a warning and is rebuilt from a guess of the image count, so `model_prompt` puts
the one `<image>` in front itself (same token ids, no warning). The processor's training-only
`labels` are dropped; `token_type_ids` stay: they mark the prefix the model attends to both ways.

Batching: every image of a batch gets the same prompt and the processor resizes every image to
the same square, so the rows have the same length and need no padding (the tokenizer pads on the
left anyway, should a row ever differ). Tests check that a batch gives the one-by-one results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runners._vlm import GenerativeAdapter

IMAGE_TOKEN = "<image>"


def model_prompt(prompt: str) -> str:
    """The processor's text for one image: `<image>` first (the image always precedes the text)."""
    if IMAGE_TOKEN in prompt:
        raise ValueError(
            f"the prompt must not contain {IMAGE_TOKEN}: the adapter puts the one image token in front "
            f"itself; pass the task alone, e.g. `describe en`, got {prompt!r}"
        )
    return IMAGE_TOKEN + prompt.strip()


class Adapter(GenerativeAdapter):
    model_class = "PaliGemmaForConditionalGeneration"
    supports_batching = True

    def load_processor(self, folder: Path, options: dict[str, Any]) -> Any:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(folder)
        processor.tokenizer.padding_side = "left"  # generation continues at the right end of every row
        self.notes = (
            f"prompt as the model sees it: {IMAGE_TOKEN} x {processor.image_seq_length} + <bos> + "
            "prompt + newline (PaliGemma's task format; the caption is the text after it)",
        )
        return processor

    def prepare(self, images: list[Any], prompt: str) -> Any:
        text = model_prompt(prompt)
        inputs = self.processor(text=[text] * len(images), images=images, return_tensors="pt", padding="longest")
        inputs.pop("labels", None)  # built for fine-tuning; generate() has no use for it
        return inputs
