"""Build a tiny random BLIP captioner: `python -m tests.tiny.blip OUT_DIR` (modern env).

The real architecture of Salesforce/blip-image-captioning-large (transformers' native
BlipForConditionalGeneration: ViT vision encoder + BERT-style text decoder cross-attending to the
image) with 32-wide layers at 64 px, and a BlipProcessor laid out like Salesforce's: a lower-casing
WordPiece `BertTokenizer` that wraps every text in [CLS] ... [SEP] (BLIP's generate() swaps [CLS]
for the decoder's bos `[DEC]` and drops the [SEP]), `[DEC]` as an added bos token, the text
config's bos/sep/pad ids pointing at those tokens (eos at [MASK], which is not the stop token,
like the real config's eos 2 = [unused1]), and a BlipImageProcessor with CLIP's mean/std.
Writes config.json, generation_config.json, model.safetensors, processor_config.json and the
tokenizer files; then reloads the folder and checks a conditional and an unconditional generation.
Offline, seeded, ~0.3 MB. The weights are wide (WEIGHT_STD) so that the text depends on the image,
and [SEP] is made likelier (SEP_SCALE) so that some captions end before the token limit.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.tiny import cli
from tests.tiny._common import widen_weights

ENV = "modern"
# Registry entries this build stands in for -> the folder of the build their --weights names
# ("" = the build itself); tests/registry_coverage.py checks every entry has one.
COVERS = {
    "blip": "",
}
# An infer option the adapter must answer with an error cell (tests/adapters/test_contract.py).
BAD_OPTION = {"ask": "everything"}

IMAGE_SIZE, PATCH = 64, 16
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [
    "a",
    "an",
    "the",
    "of",
    "photo",
    "picture",
    "photography",
    "abandoned",
    "building",
    "factory",
    "hall",
    "broken",
    "window",
    "windows",
    "door",
    "stair",
    "staircase",
    "rust",
    "rusty",
    "wall",
    "walls",
    "brick",
    "with",
    "and",
    "in",
    "on",
    "room",
    "dark",
    "light",
    "there",
    "is",
    "are",
    "graffiti",
    "floor",
    "ceiling",
    "old",
    "empty",
]
CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,:;!?'-"
# CLIP's normalisation, as in the real preprocessor_config.json.
MEAN, STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
# Wider than the default init (0.02): a model this small otherwise writes the same text for every image.
WEIGHT_STD = 0.5
# Scales the [SEP] row of the (tied) output embedding: some captions then end early and others run to
# the token limit, so a batch has rows of different lengths (the padding path) and an empty caption.
SEP_SCALE = 3.0


def make_tokenizer():  # -> transformers.BertTokenizer
    from transformers import BertTokenizer

    # Whole words, single characters and ##characters: any lower-case ASCII text encodes without [UNK].
    vocab = SPECIALS + WORDS + [c for c in CHARS if c not in WORDS] + ["##" + c for c in CHARS]
    tok = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)})
    tok.add_special_tokens({"bos_token": "[DEC]"})  # BLIP's decoder start (id 30522 in the real model)
    return tok


def make_model(tok):  # -> BlipForConditionalGeneration
    import torch
    from transformers import BlipConfig, BlipForConditionalGeneration

    # As in the real config: generation stops on sep_token_id ([SEP]); eos_token_id names a token that
    # is not the stop token (2 = [unused1] there, [MASK] here), so the generation config's eos is wrong.
    text = dict(
        vocab_size=len(tok),
        hidden_size=32,
        encoder_hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=128,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.mask_token_id,
        sep_token_id=tok.sep_token_id,
        pad_token_id=tok.pad_token_id,
    )
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
    )
    torch.manual_seed(0)
    model = BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision, projection_dim=16)).eval()
    widen_weights(model, WEIGHT_STD)
    with torch.no_grad():
        model.text_decoder.cls.predictions.decoder.weight[tok.sep_token_id] *= SEP_SCALE
    return model


def make_processor(tok):  # -> BlipProcessor
    from transformers import BlipImageProcessor, BlipProcessor

    ip = BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=MEAN, image_std=STD)
    return BlipProcessor(image_processor=ip, tokenizer=tok)


def check(out: Path) -> None:
    """Reload offline; the output starts with [DEC] + the prefix, and depends on the image."""
    import torch
    from PIL import Image
    from transformers import AutoProcessor, BlipForConditionalGeneration

    model = BlipForConditionalGeneration.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    images = [
        Image.radial_gradient("L").convert("RGB").resize((80, 50)),
        Image.linear_gradient("L").convert("RGB").resize((50, 80)),
    ]
    texts = []
    for image in images:
        for prefix in ("a photo of", ""):
            inputs = processor(images=image, text=prefix, return_tensors="pt")
            with torch.no_grad():
                ids = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
            expected = [processor.tokenizer.bos_token_id, *inputs["input_ids"][0, 1:-1].tolist()]
            if ids.shape[1] != len(expected) + 6 or ids[0, : len(expected)].tolist() != expected:
                raise RuntimeError(f"unexpected tiny BLIP output for prefix {prefix!r}: {ids.tolist()}")
            texts.append(processor.decode(ids[0, len(expected) :], skip_special_tokens=True))
    if texts[0] == texts[2]:
        raise RuntimeError(f"the tiny BLIP ignores its input image: {texts}")


def build(out: Path) -> None:
    tok = make_tokenizer()
    make_model(tok).save_pretrained(out)
    make_processor(tok).save_pretrained(out)
    check(out)


if __name__ == "__main__":
    sys.exit(cli(build))
