"""The judge: a text-only instruct LLM that merges every model's caption and tags for one image.

(Any captioner can also judge while looking at the photo: runners/_vlm.py's vision_judge. Both
share runners/_merge.py: the models' outputs as a prompt, the answer's format, the tag check.)

Seed 002: several VLMs describe the photo, then one LLM writes ONE merged description and ONE
merged tag list. It never sees the image, only what the models said (ImageIn.context, sent by the
orchestrator with no image data), so its output is a SYNTHESIS, shown as its own column.

The system prompt forbids adding anything no model reported, and the output is checked for it:
a merged tag none of whose words appears in any model's output is dropped and listed in
raw.unsupported_tags (the judge invented it). Answer format, parsed here:
    DESCRIPTION: <merged description>
    TAGS: <comma-separated tags>
Native `AutoModelForCausalLM` + the tokenizer's chat template; greedy, one image per call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runners._images import DecodedImage
from runners._merge import DEFAULT_MAX_TAGS_PER_MODEL, format_outputs, merged_result
from runners._vlm import GenerativeAdapter, generate_kwargs
from runners.base import ImageResult

DEFAULT_SYSTEM_PROMPT = (
    "You merge the outputs of several image models that looked at the same photo. Write one description and "
    "one tag list using ONLY what the models reported: never add an object, material, colour, place or quality "
    "that no model mentioned. When models disagree, prefer what more models say and leave out claims only one "
    "model makes if others contradict it. Answer in exactly this format:\n"
    "DESCRIPTION: <two to four factual sentences>\n"
    "TAGS: <comma-separated short tags>"
)
SCORE_NOTE = (
    "the judge's tags are a synthesis of the other models' outputs, not a look at the image; their scores "
    "are estimates by position in its list (first 0.9, last 0.5)"
)


class Adapter(GenerativeAdapter):
    model_class = "AutoModelForCausalLM"
    system_prompt = DEFAULT_SYSTEM_PROMPT
    score_note = SCORE_NOTE
    notes = ("a synthesis: merges the other models' captions and tags, never sees the image",)

    def load_processor(self, folder: Path, options: dict[str, Any]) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder)

    def prepare(self, images: list[Any], prompt: str) -> Any:
        messages = [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": prompt}]
        return self.processor.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )

    def warmup_inputs(self) -> list[DecodedImage]:
        context = {
            "outputs": [
                {
                    "model": "warmup",
                    "kind": "captioner",
                    "caption": "A hall with broken windows.",
                    "tags": ["hall", "broken window"],
                }
            ]
        }
        return [DecodedImage("warmup", "warmup", None, {}, context)]

    def infer(self, images: list[DecodedImage], options: dict[str, Any]) -> list[ImageResult]:
        if self.model is None:
            raise RuntimeError("infer before load")
        self.system_prompt = options.get("system_prompt") or DEFAULT_SYSTEM_PROMPT
        max_tags = options.get("max_tags_per_model", DEFAULT_MAX_TAGS_PER_MODEL)
        if isinstance(max_tags, bool) or not isinstance(max_tags, int) or max_tags < 1:
            raise ValueError(f"option max_tags_per_model must be a positive integer, got {max_tags!r}")
        kwargs = generate_kwargs(options)
        out: list[ImageResult] = []
        for image in images:
            if not image.context.get("outputs"):
                out.append(
                    {
                        "status": "no_tags",
                        "caption": None,
                        "tags": [],
                        "raw": {"inputs": []},
                        "message": "no model produced a usable output for this image: nothing to merge",
                    }
                )
                continue
            prompt = format_outputs(image.context, max_tags)
            [run] = self.generate([None], prompt, kwargs)
            out.append(merged_result(image.context, self.system_prompt, run))
        return out
