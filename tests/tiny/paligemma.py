"""Build tiny random PaliGemmas: `python -m tests.tiny.paligemma OUT_DIR` (modern env).

Two architectures, one subfolder each, because the registry's two PaliGemma models differ:
    OUT_DIR/paligemma2   Gemma 2 text decoder (google/paligemma2-3b-mix-448, model `paligemma`)
    OUT_DIR/paligemma1   Gemma 1 text decoder (gokaygokay/sd3-long-captioner-v2, model `paligemma-long`)
Both are transformers' native PaliGemmaForConditionalGeneration (SigLIP vision tower + projector +
Gemma decoder) with 32-wide layers at 64 px, and a PaliGemmaProcessor laid out like Google's: a
byte-level BPE tokenizer trained offline with Gemma's special-token ids (pad 0, eos 1, bos 2,
unk 3) and `<image>`, the 1024 `<locNNNN>` + 128 `<segNNN>` tokens the processor adds, and a SigLIP
image processor whose `image_seq_length` equals the vision tower's patch count. Each folder is
reloaded with `from_pretrained` + `AutoProcessor` and generates once. Offline, seeded, ~2 MB.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.tiny import cli
from tests.tiny._common import byte_level_bpe, widen_weights, write_facts

ENV = "modern"
# Registry entries this build stands in for -> the folder of the build their --weights names
# ("" = the build itself); tests/registry_coverage.py checks every entry has one.
COVERS = {
    "paligemma": "paligemma2",
    "paligemma-long": "paligemma1",
}
# An infer option the adapter must answer with an error cell (tests/adapters/test_contract.py).
BAD_OPTION = {"ask": "everything"}

IMAGE_SIZE, PATCH = 64, 16
VARIANTS = {"paligemma2": "gemma2", "paligemma1": "gemma"}  # subfolder -> text model_type
# Gemma's vocabulary starts <pad> <eos> <bos> <unk>; PaliGemma's <image> is an added special token.
SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<image>"]
CORPUS = [
    "caption en",
    "describe en",
    "answer en list the objects and materials in this photo separated by commas",
    "Describe this photo in detail: the place, the objects, the materials and their condition.",
    "An abandoned factory hall with broken windows, peeling paint and rusty machinery.",
    "staircase, window, door, chair, graffiti, brick wall, concrete, rust, dust",
    "A dark corridor in a disused hospital; light falls through a broken skylight.",
]
# Wider than the default init (0.02), so that the output depends on the picture; the (tied) token
# embedding stays narrower, or the last prompt token dominates the residual stream and the model
# repeats "\n" whatever the image (seen at 0.3-0.5).
WEIGHT_STD, EMBED_STD = 0.5, 0.1
EXTRA_TOKEN_SCALE = 0.05  # shrinks the <loc>/<seg> rows of the tied embedding, see make_model


def make_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    from transformers import PreTrainedTokenizerFast

    # Byte-level alphabet: any text (and the processor's "\n") encodes, no <unk>.
    tok = byte_level_bpe(CORPUS, SPECIALS, vocab_size=480)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="<eos>",
        bos_token="<bos>",
        unk_token="<unk>",
        padding_side="left",
        extra_special_tokens={"image_token": "<image>"},
    )


def make_processor(tok):  # -> PaliGemmaProcessor
    from transformers import PaliGemmaProcessor, SiglipImageProcessor

    # SigLIP normalisation (mean = std = 0.5) and a square resize, as in Google's preprocessor_config.
    ip = SiglipImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    ip.image_seq_length = (IMAGE_SIZE // PATCH) ** 2
    # The processor adds the <loc>/<seg> tokens to the tokenizer: build it before sizing the model.
    return PaliGemmaProcessor(image_processor=ip, tokenizer=tok)


def make_model(processor, text_type: str):  # -> PaliGemmaForConditionalGeneration
    import torch
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

    tok = processor.tokenizer
    vocab = len(tok)
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    text = dict(
        model_type=text_type,
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=512,
        **ids,
    )
    vision = dict(
        model_type="siglip_vision_model",
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
        vision_use_head=False,
    )
    torch.manual_seed(0)
    config = PaliGemmaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tok.image_token_id,
        vocab_size=vocab,
        projection_dim=32,
        hidden_size=32,
        **ids,
    )
    model = PaliGemmaForConditionalGeneration(config).eval()
    widen_weights(model, WEIGHT_STD)
    with torch.no_grad():
        embedding = model.get_input_embeddings().weight
        embedding.normal_(0.0, EMBED_STD)
        # 1152 of the ~1.6k tokens are <loc>/<seg> markup, which a random model would mostly emit; the
        # real model emits them only for detect/segment. Short rows in the tied embedding keep their
        # logits low, so the output is mostly words and the caption/tag paths run end to end.
        extra = [i for t, i in tok.get_added_vocab().items() if t.startswith(("<loc", "<seg"))]
        embedding[extra] *= EXTRA_TOKEN_SCALE
    model.generation_config.update(**ids)
    return model


def check(out: Path) -> None:
    """Each folder reloads offline, takes the `<image>`-led prompt without warnings, and sees the image."""
    import logging

    import torch
    from PIL import Image
    from transformers import AutoProcessor, PaliGemmaForConditionalGeneration

    model = PaliGemmaForConditionalGeneration.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    images = [
        Image.radial_gradient("L").convert("RGB").resize((80, 50)),
        Image.linear_gradient("L").convert("RGB").resize((50, 80)),
    ]
    warnings: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("transformers").addHandler(handler)
    texts = []
    # the layout the adapter relies on: <image> x image_seq_length, <bos>, the prompt, "\n"
    prompt_ids = processor.tokenizer("caption en\n", add_special_tokens=False)["input_ids"]
    for image in images:
        inputs = processor(text="<image>caption en", images=image, return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
        start = inputs["input_ids"].shape[1]
        if start != processor.image_seq_length + 1 + len(prompt_ids) or ids.shape[1] != start + 6:
            raise RuntimeError(f"unexpected tiny PaliGemma shapes: prompt {start}, output {tuple(ids.shape)}")
        texts.append(processor.decode(ids[0, start:], skip_special_tokens=True))
    logging.getLogger("transformers").removeHandler(handler)
    if texts[0] == texts[1]:
        raise RuntimeError(f"the tiny PaliGemma ignores its input image: {texts[0]!r}")
    if any("<image>" in w for w in warnings):
        raise RuntimeError(f"the processor warned about the prompt: {warnings}")


def build(out: Path) -> None:
    for folder, text_type in VARIANTS.items():
        processor = make_processor(make_tokenizer())
        make_model(processor, text_type).save_pretrained(out / folder)
        processor.save_pretrained(out / folder)
        check(out / folder)
    write_facts(out, image_tokens=(IMAGE_SIZE // PATCH) ** 2)  # <image> tokens per photo, both variants


if __name__ == "__main__":
    sys.exit(cli(build))
