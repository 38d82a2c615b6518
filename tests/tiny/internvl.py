"""Build a tiny random InternVL (-hf format): `python -m tests.tiny.internvl OUT_DIR` (modern env).

The real native architecture (transformers' InternVLForConditionalGeneration: InternViT vision
tower, pixel-shuffle projector, Qwen2 decoder) with 32-wide layers at 64 px tiles, and a processor
laid out like OpenGVLab/InternVL3-*-hf's: a GotOcr2 image processor (ImageNet mean/std, tiles of
`size`), a byte-level BPE tokenizer trained offline that carries the `<img>`, `</img>`,
`<IMG_CONTEXT>` and `<video>` specials the processor reads, ChatML with `<|im_end|>` as EOS, and
the -hf repos' chat template (an image part becomes `<IMG_CONTEXT>\\n`, which the processor
expands to `<img>` + `<IMG_CONTEXT>` x image_seq_length x tiles + `</img>`). `image_seq_length`
= (64 / 16)^2 x 0.5^2 = 4 tokens per tile. Writes config.json, generation_config.json,
model.safetensors, processor/tokenizer files and chat_template.jinja; then reloads the folder
and checks that generation sees the image and that tiling changes the prompt length.
Offline, seeded, < 1 MB. Weights are wider than the default init (WEIGHT_STD) so the output
depends on the picture.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.tiny import cli
from tests.tiny._common import qwen_style_bpe, widen_weights, write_facts

ENV = "modern"
# Registry entries this build stands in for -> the folder of the build their --weights names
# ("" = the build itself); tests/registry_coverage.py checks every entry has one.
COVERS = {
    "internvl3": "",
}
# An infer option the adapter must answer with an error cell (tests/adapters/test_contract.py).
BAD_OPTION = {"ask": "everything"}

TILE = 64
PATCH = 16
DOWNSAMPLE = 0.5
IMAGE_SEQ_LENGTH = int((TILE // PATCH) ** 2 * DOWNSAMPLE**2)
# The processor finds these by attribute name on the tokenizer (start/end/context image, video).
IMAGE_SPECIALS = {
    "start_image_token": "<img>",
    "end_image_token": "</img>",
    "context_image_token": "<IMG_CONTEXT>",
    "video_token": "<video>",
}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *IMAGE_SPECIALS.values()]
CORPUS = [
    "system",
    "user",
    "assistant",
    "Describe this photo in detail.",
    "List short tags for this photo, comma-separated.",
    "An abandoned factory hall with broken windows and peeling paint.",
    "factory, broken window, rust, graffiti, staircase, decay",
    "A dark corridor with doors, debris on the floor and light from a skylight.",
]
# As in the -hf repos (transformers' convert_internvl_weights_to_hf.py): ChatML, no default
# system message, an image part becomes "<IMG_CONTEXT>\n" before the text.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # the -hf preprocessor config's
WEIGHT_STD = 0.3


def make_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    return qwen_style_bpe(CORPUS, SPECIALS, extra_special_tokens=IMAGE_SPECIALS)


def make_model(tok):  # -> InternVLForConditionalGeneration
    import torch
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    torch.manual_seed(0)
    vision = dict(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=[TILE, TILE],
        patch_size=[PATCH, PATCH],
    )
    text = dict(
        model_type="qwen2",
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    config = InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tok.context_image_token_id,
        image_seq_length=IMAGE_SEQ_LENGTH,
        downsample_ratio=DOWNSAMPLE,
    )
    model = InternVLForConditionalGeneration(config).eval()
    widen_weights(model, WEIGHT_STD)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


def make_processor(tok):  # -> InternVLProcessor
    from transformers import GotOcr2ImageProcessor, InternVLProcessor, InternVLVideoProcessor

    ip = GotOcr2ImageProcessor(
        size={"height": TILE, "width": TILE},
        image_mean=MEAN,
        image_std=STD,
        crop_to_patches=False,
        min_patches=1,
        max_patches=12,
    )
    vp = InternVLVideoProcessor(size={"height": TILE, "width": TILE}, image_mean=MEAN, image_std=STD)
    return InternVLProcessor(
        image_processor=ip,
        tokenizer=tok,
        video_processor=vp,
        image_seq_length=IMAGE_SEQ_LENGTH,
        chat_template=CHAT_TEMPLATE,
    )


def check(out: Path) -> None:
    """The folder must reload offline, expand tiles into image tokens, and generate from the image."""
    import torch
    from PIL import Image
    from transformers import AutoProcessor, InternVLForConditionalGeneration

    model = InternVLForConditionalGeneration.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this photo."}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    images = [
        Image.radial_gradient("L").convert("RGB").resize((160, 80)),
        Image.linear_gradient("L").convert("RGB").resize((80, 80)),
    ]
    texts, lengths = [], []
    for image in images:
        inputs = processor(images=image, text=prompt, max_patches=4, return_tensors="pt")
        lengths.append(int(inputs["input_ids"].shape[1]))
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
        texts.append(processor.decode(ids[0, lengths[-1] :]))
    # 160x80 tiles as 2x1 plus a thumbnail (3 tiles), 80x80 as 1 tile: 2 x 4 more image tokens
    if lengths[0] - lengths[1] != 2 * IMAGE_SEQ_LENGTH:
        raise RuntimeError(f"tiling does not reach the prompt: lengths {lengths}")
    if texts[0] == texts[1]:
        raise RuntimeError(f"the tiny InternVL ignores its input image: {texts[0]!r}")


def build(out: Path) -> None:
    tok = make_tokenizer()
    make_model(tok).save_pretrained(out)
    make_processor(tok).save_pretrained(out)
    check(out)
    write_facts(out, tile_px=TILE, tokens_per_tile=IMAGE_SEQ_LENGTH)


if __name__ == "__main__":
    sys.exit(cli(build))
