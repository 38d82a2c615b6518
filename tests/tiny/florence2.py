"""Build a tiny random Florence-2: `python -m tests.tiny.florence2 OUT_DIR` (modern env).

The real native architecture (transformers' Florence2ForConditionalGeneration: DaViT vision tower,
BART encoder-decoder) with 16-32 wide layers, 1 deep, at 64 px, and a processor laid out like
florence-community's: a byte-level BPE tokenizer trained offline on a toy corpus, with `<image>`,
the 1000 `<loc_i>` tokens and Florence's region tokens (so `<OD>` output parses), a CLIP-style image
processor whose `image_seq_length` is measured from the vision tower, and the post-processor
config listing every parse task (`post_process_generation` refuses unlisted ones). Writes
config.json, generation_config.json, model.safetensors, processor_config.json, tokenizer files;
then reloads the folder with `from_pretrained` + `AutoProcessor` and checks one generation.
Offline, seeded, ~1 MB. The model ends every generation at once (EOS first, see `end_at_once`):
callers wanting output pass min_new_tokens.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.tiny import cli
from tests.tiny._common import byte_level_bpe, widen_weights

ENV = "modern"
# Registry entries this build stands in for -> the folder of the build their --weights names
# ("" = the build itself); tests/registry_coverage.py checks every entry has one.
COVERS = {
    "florence2": "",
}
# An infer option the adapter must answer with an error cell (tests/adapters/test_contract.py).
BAD_OPTION = {"caption_task": "<BOGUS>"}

IMAGE_SIZE = 64
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<image>"]
REGION_TOKENS = [f"<loc_{i}>" for i in range(1000)] + ["<poly>", "</poly>", "<sep>", "<od>", "</od>", "<ocr>", "</ocr>"]
CORPUS = [
    "What does the image describe?",
    "Describe in detail what is shown in the image.",
    "Describe with a paragraph what is shown in the image.",
    "Locate the objects with category name in the image.",
    "What is the text in the image?",
    "The image shows an abandoned factory hall with broken windows and peeling paint.",
    "a staircase, a window, a door, a chair, graffiti on a brick wall",
    "rusty machinery in a dark room, light rays through the roof",
]
# Every parse task the processor knows; the real repos list them in processor_config.json.
POST_PROCESSOR_CONFIG = {
    "pure_text": {},
    "description_with_bboxes": {},
    "bboxes": {},
    "polygons": {},
    "description_with_bboxes_or_polygons": {},
    "phrase_grounding": {"banned_grounding_tokens": []},
    "ocr": {
        "PATTERN": r"(.+?)<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>"
        r"<loc_(\d+)><loc_(\d+)>",
        "AREA_THRESHOLD": 0.0,
    },
}
# Florence's normalisation (ImageNet mean/std), as in the real preprocessor config.
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
WEIGHT_STD = 0.5
EOS_BIAS, EOS_ROW = 2.0, 20.0  # see end_at_once


def make_tokenizer():  # -> transformers.PreTrainedTokenizerFast (imported lazily)
    from transformers import PreTrainedTokenizerFast

    # Byte-level alphabet: any text encodes, no <unk>. The processor adds bos/eos itself.
    tok = byte_level_bpe(CORPUS, SPECIALS + REGION_TOKENS, vocab_size=512)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        extra_special_tokens={"image_token": "<image>"},
    )


def make_model(tok):  # -> Florence2ForConditionalGeneration
    import torch
    from transformers import Florence2Config, Florence2ForConditionalGeneration

    # 1024 decoder positions like the real model, so the adapter's default 512 new tokens fit.
    text = dict(
        vocab_size=len(tok),
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=1024,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        decoder_start_token_id=tok.eos_token_id,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
    )
    vision = dict(
        depths=[1, 1, 1, 1],
        embed_dim=[16, 16, 32, 32],
        num_heads=[1, 1, 2, 2],
        num_groups=[1, 1, 2, 2],
        window_size=2,
        projection_dim=32,
        max_temporal_embeddings=4,
        max_position_embeddings=16,
        drop_path_rate=0.0,
    )
    torch.manual_seed(0)
    config = Florence2Config(text_config=text, vision_config=vision, image_token_id=tok.image_token_id)
    model = Florence2ForConditionalGeneration(config).eval()
    # At the default init (std 0.02) a model this small emits the same tokens for every image, which
    # would make batch-order checks void; wider weights make the output depend on the picture.
    widen_weights(model, WEIGHT_STD)
    end_at_once(model, tok.eos_token_id)
    return model


def end_at_once(model, eos_id: int) -> None:
    """Make EOS the decoder's first choice, so that generation ends at once unless min_new_tokens says no.

    A real failure mode (the feasibility run's random Florence-2 stopped after 2 tokens), made
    certain: tests can then tell that min_new_tokens reaches generate(), and the empty-caption path
    runs end to end. The last decoder layer's output LayerNorm gets a bias along one direction,
    and the EOS row of the (tied) embedding matrix points that way: EOS's logit is ~20 x (2 + N(0, 1))
    while the others stay ~N(0, 3), which still depend on the image once EOS is suppressed.
    """
    import torch

    decoder = model.model.language_model.decoder
    direction = torch.nn.functional.normalize(
        torch.randn(decoder.layers[-1].final_layer_norm.bias.shape[0], generator=torch.Generator().manual_seed(1)),
        dim=0,
    )
    with torch.no_grad():
        decoder.layers[-1].final_layer_norm.bias.copy_(EOS_BIAS * direction)
        model.get_input_embeddings().weight[eos_id] = EOS_ROW * direction


def image_tokens(model) -> int:
    """Vision tokens per image: the processor must insert exactly this many `<image>` tokens."""
    import torch

    with torch.no_grad():
        features = model.get_image_features(torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE))
    return (features.pooler_output if hasattr(features, "pooler_output") else features).shape[1]


def make_processor(tok, n_image_tokens: int):  # -> Florence2Processor
    from transformers import CLIPImageProcessor, Florence2Processor

    ip = CLIPImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_center_crop=False,
        image_mean=MEAN,
        image_std=STD,
        image_seq_length=n_image_tokens,
    )
    ip.image_seq_length = n_image_tokens
    return Florence2Processor(image_processor=ip, tokenizer=tok, post_processor_config=POST_PROCESSOR_CONFIG)


def check(out: Path) -> None:
    """The folder must reload offline, generate through the adapter's calls, and see the image."""
    import torch
    from PIL import Image
    from transformers import AutoProcessor, Florence2ForConditionalGeneration

    model = Florence2ForConditionalGeneration.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    images = [
        Image.radial_gradient("L").convert("RGB").resize((80, 50)),
        Image.linear_gradient("L").convert("RGB").resize((50, 80)),
    ]
    texts = []
    for image in images:
        inputs = processor(text="<OD>", images=image, return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, num_beams=2, do_sample=False)
            unforced = model.generate(**inputs, max_new_tokens=6, num_beams=2, do_sample=False)
        texts.append(processor.batch_decode(ids, skip_special_tokens=False)[0])
        parsed = processor.post_process_generation(texts[-1], task="<OD>", image_size=image.size)["<OD>"]
        if ids.shape[1] != 7 or set(parsed) != {"bboxes", "labels"}:
            raise RuntimeError(f"unexpected tiny Florence-2 output: {ids.shape} {parsed}")
        if unforced[0].tolist() != [processor.tokenizer.eos_token_id] * 2:  # decoder start, then EOS
            raise RuntimeError(f"the tiny Florence-2 should end at once without min_new_tokens: {unforced}")
    if texts[0] == texts[1]:
        raise RuntimeError(f"the tiny Florence-2 ignores its input image: {texts[0]!r}")
    sample = processor.post_process_generation(
        "<s>door<loc_100><loc_200><loc_500><loc_900></s>", task="<OD>", image_size=(1000, 1000)
    )["<OD>"]
    if sample["labels"] != ["door"]:
        raise RuntimeError(f"<OD> parsing is broken in the tiny processor: {sample}")


def build(out: Path) -> None:
    tok = make_tokenizer()
    model = make_model(tok)
    model.save_pretrained(out)
    make_processor(tok, image_tokens(model)).save_pretrained(out)
    check(out)


if __name__ == "__main__":
    sys.exit(cli(build))
