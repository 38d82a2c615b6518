"""BLIP-2 (Salesforce/blip2-opt-2.7b, Salesforce/blip2-flan-t5-xl), native transformers.

Runs in the `modern` env through runners/_vlm.py's GenerativeAdapter (allow_empty_prompt: an
empty prompt is unconditional captioning). A frozen ViT-g and a Q-Former turn the image into
num_query_tokens (32) soft tokens that stand in front of the text for a frozen language model:
OPT-2.7b (decoder-only: generate() returns prompt + new tokens) or Flan-T5-XL (encoder-decoder:
the encoder reads query tokens + prompt, generate() returns the decoder start token + new tokens).
The model card's recipes, both through the `prompt` option:
    prompt ""                 unconditional captioning: a short COCO-style caption
    prompt "Question: <q> Answer:"   visual question answering (the zero-shot VQA format of the paper)
Neither model is a chat model. A bare question (`--prompt "What is in this photo?"`, as --prompt
gives every captioner) would be continued rather than answered, so option `qa_template`
(default "Question: {} Answer:") puts it in the VQA format; prompts already ending in "Answer:"
and the empty prompt stay as they are, and qa_template = "" passes every prompt verbatim (e.g. a
captioning prefix like "a photo of"). raw.generations[task].prompt is the text the model was
given, after the template.

The BLIP-2 processor pitfall (transformers >= 4.47; research/feasibility.md 2.1): Blip2Processor
expands `<image>` x num_query_tokens in front of the text only when processor_config.json has
num_query_tokens; copies of the repos from before Salesforce's late-2024 update lack it, and the
image would then be silently dropped. load_processor takes the count from config.json instead
(and says so in the load notes). A tokenizer carrying `image_token` as a plain string breaks
Blip2Processor.__call__ (it reads `.content`), so that string is wrapped in an AddedToken; and an
`<image>` id that differs from config.json's image_token_index is refused with the fix named.

prompt_tokens counts what the language model reads: the query tokens + (OPT: its bos `</s>`) +
the prompt's tokens (+ T5's `</s>`). Batching: one prompt per call and one image size, so rows
have equal length (the tokenizer pads on the left anyway); tests check batch == one by one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runners._vlm import GenerativeAdapter

DEFAULT_QA_TEMPLATE = "Question: {} Answer:"
ANSWER_CUE = "answer:"  # a prompt ending like this is in the VQA format already ("Short answer:" too)


def qa_template(options: dict[str, Any]) -> str:
    """Option qa_template: a template with one {} for the question, or "" for verbatim prompts."""
    value = options.get("qa_template", DEFAULT_QA_TEMPLATE)
    if not isinstance(value, str) or (value and value.count("{}") != 1):
        raise ValueError(
            f"option qa_template must contain {{}} exactly once (where the question goes), e.g. "
            f'{DEFAULT_QA_TEMPLATE!r}, or be "" to give prompts to BLIP-2 verbatim; got {value!r}'
        )
    return value


def model_prompt(prompt: str, template: str) -> str:
    """The text BLIP-2 is given for `prompt`: "" (unconditional) and prompts ending in "Answer:" stay."""
    prompt = prompt.strip()
    if not prompt or not template or prompt.lower().endswith(ANSWER_CUE):
        return prompt
    return template.replace("{}", prompt)


class Adapter(GenerativeAdapter):
    model_class = "Blip2ForConditionalGeneration"
    supports_batching = True
    allow_empty_prompt = True

    def prompts(self, options: dict[str, Any]) -> dict[str, str]:
        template = qa_template(options)
        return {task: model_prompt(prompt, template) for task, prompt in super().prompts(options).items()}

    def load_processor(self, folder: Path, options: dict[str, Any]) -> Any:
        from transformers import AddedToken, AutoProcessor

        processor = AutoProcessor.from_pretrained(folder)
        config = self.model.config
        queries = config.num_query_tokens
        notes = []
        if processor.num_query_tokens is None:
            processor.num_query_tokens = queries
            notes.append(
                f"processor_config.json has no num_query_tokens (a copy from before Salesforce's update?): "
                f"took {queries} from config.json, or the processor would drop the image"
            )
        elif processor.num_query_tokens != queries:
            raise ValueError(
                f"{folder}: processor_config.json says num_query_tokens {processor.num_query_tokens}, "
                f"config.json {queries}: the files come from different versions of the model; download "
                f"the whole repo at one revision"
            )
        if isinstance(processor.image_token, str):  # Blip2Processor.__call__ reads image_token.content
            processor.image_token = AddedToken(processor.image_token, normalized=False, special=True)
        image_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token.content)
        if config.image_token_id is None or image_id != config.image_token_id:
            raise ValueError(
                f"{folder}: the tokenizer's {processor.image_token.content} is id {image_id}, "
                f"config.json's image_token_index is {config.image_token_id}: a BLIP-2 checkpoint from "
                f"before transformers 4.47's image-token format, or files from different revisions; "
                f"download the current Salesforce repo"
            )
        processor.tokenizer.padding_side = "left"  # decoder-only generation continues at the right end of every row
        lm = "encoder-decoder" if config.text_config.is_encoder_decoder else "decoder-only"
        self.notes = (
            f"{config.text_config.model_type} language model ({lm}); the text it reads: <image> x {queries} "
            f'query tokens + prompt (a bare question goes into option qa_template; "" = unconditional '
            f"caption); prompt_tokens include the {queries} query tokens",
            *notes,
        )
        return processor

    def prepare(self, images: list[Any], prompt: str) -> Any:
        # "" is a real text for the processor: OPT's tokenizer gives its bos, T5's its </s>, which is
        # the input the Salesforce/LAVIS code uses for unconditional captioning.
        return self.processor(images=images, text=[prompt] * len(images), return_tensors="pt", padding="longest")

    def new_token_ids(self, ids: Any, inputs: Any) -> list[list[int]]:
        if self.model.config.text_config.is_encoder_decoder:  # Flan-T5: decoder start token, then new tokens
            return [row[1:].tolist() for row in ids]
        return super().new_token_ids(ids, inputs)  # OPT: the prompt (query tokens + text), then new tokens
