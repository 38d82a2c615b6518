"""Build tiny random BLIP-2s: `python -m tests.tiny.blip2 OUT_DIR` (modern env).

Two language models, one subfolder each, because the registry's two BLIP-2 models differ:
    OUT_DIR/opt       OPT decoder (Salesforce/blip2-opt-2.7b, model `blip2`): decoder-only, its
                      generate() output starts with the prompt
    OUT_DIR/flan-t5   Flan-T5 encoder-decoder (Salesforce/blip2-flan-t5-xl, model `blip2-flan`):
                      its output starts with the decoder start token instead
Both are transformers' native Blip2ForConditionalGeneration (ViT + Q-Former + projection + LM)
with 32-wide layers at 64 px and NUM_QUERY_TOKENS query tokens (32 in the real models), and a
Blip2Processor laid out like Salesforce's updated repos: the tokenizer does NOT carry an
`image_token` attribute (Blip2Processor then adds `<image>` as an AddedToken itself; a string
attribute breaks its __call__, research/feasibility.md 2.1), processor_config.json carries
num_query_tokens (the processor then puts that many `<image>` tokens before the text), and
config.json's image_token_index is that token's id. Tokenizers trained offline: a byte-level BPE
with OPT's special tokens (<s> 0, <pad> 1, </s> 2, <unk> 3; `</s>` is also its bos and is put
before every text) and a SentencePiece-style Unigram with T5's (<pad> 0, </s> 1, <unk> 2; `</s>`
after every text). Each folder is reloaded with `from_pretrained` + `AutoProcessor` and
generates once. Offline, seeded, ~0.7 MB. The weights are wide (WEIGHT_STD) but the language
model's attention is kept diffuse (QK_STD), so that the output depends on the image for every prompt.
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
    "blip2": "opt",
    "blip2-flan": "flan-t5",
}
# An infer option the adapter must answer with an error cell (tests/adapters/test_contract.py).
BAD_OPTION = {"ask": "everything"}

IMAGE_SIZE, PATCH = 64, 16
NUM_QUERY_TOKENS = 16  # 32 in the real models; fewer than ~16 and a long prompt drowns out the image
VARIANTS = ("opt", "flan-t5")
CORPUS = [
    "Question: What objects and materials are in this photo? List them separated by commas. Answer:",
    "Question: Describe this photo in detail. Answer:",
    "a photo of",
    "an abandoned factory hall with broken windows, peeling paint and rusty machinery",
    "staircase, window, door, chair, graffiti, brick wall, concrete, rust, dust",
    "a dark corridor in a disused hospital; light falls through a broken skylight",
]
# CLIP's normalisation, as in the real preprocessor_config.json.
MEAN, STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
WEIGHT_STD = 0.5  # wider than the default init, so that the output depends on the picture
# ...except the language model's attention queries and keys: wide ones make every head attend to one
# position (mostly the last text token), and the image would not reach the output for long prompts.
QK_STD = 0.05
QK_WEIGHTS = ("q_proj.weight", "k_proj.weight", ".q.weight", ".k.weight")  # OPT's, T5's names


def opt_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok = byte_level_bpe(CORPUS, ["<s>", "<pad>", "</s>", "<unk>"])
    # OPT's tokenizer starts every text with </s> (its bos), the LM's cue to begin
    tok.post_processor = processors.TemplateProcessing(single="</s> $A", special_tokens=[("</s>", 2)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="</s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="left",
    )


def t5_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
        initial_alphabet=list("abcdefghijklmnopqrstuvwxyz"),
    )
    tok.train_from_iterator(CORPUS * 4, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def make_processor(variant: str):  # -> Blip2Processor
    from transformers import Blip2Processor, BlipImageProcessor

    tok = opt_tokenizer() if variant == "opt" else t5_tokenizer()
    ip = BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, image_mean=MEAN, image_std=STD)
    # adds <image> to the tokenizer: build it before sizing the model's vocabulary
    return Blip2Processor(image_processor=ip, tokenizer=tok, num_query_tokens=NUM_QUERY_TOKENS)


def make_model(processor, variant: str):  # -> Blip2ForConditionalGeneration
    import torch
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    tok = processor.tokenizer
    vocab = len(tok)
    if variant == "opt":
        text = dict(
            model_type="opt",
            vocab_size=vocab,
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            word_embed_proj_dim=32,
            max_position_embeddings=256,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    else:  # Flan-T5: gated-GELU feed-forward, untied LM head, decoding starts at <pad>
        text = dict(
            model_type="t5",
            vocab_size=vocab,
            d_model=32,
            d_kv=16,
            d_ff=64,
            num_layers=1,
            num_decoder_layers=1,
            num_heads=2,
            relative_attention_num_buckets=8,
            feed_forward_proj="gated-gelu",
            tie_word_embeddings=False,
            decoder_start_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
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
    qformer = dict(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        encoder_hidden_size=32,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    config = Blip2Config(
        vision_config=vision,
        qformer_config=qformer,
        text_config=text,
        num_query_tokens=NUM_QUERY_TOKENS,
        image_token_index=tok.convert_tokens_to_ids("<image>"),
    )
    model = Blip2ForConditionalGeneration(config).eval()
    widen_weights(model, WEIGHT_STD)
    with torch.no_grad():
        for name, param in model.language_model.named_parameters():
            if name.endswith(QK_WEIGHTS):
                param.normal_(0.0, QK_STD)
    return model


def check(out: Path, variant: str) -> None:
    """The folder reloads offline, puts the query tokens before the prompt, and the output depends on the image."""
    import torch
    from PIL import Image
    from transformers import AutoProcessor, Blip2ForConditionalGeneration

    model = Blip2ForConditionalGeneration.from_pretrained(out).eval()
    processor = AutoProcessor.from_pretrained(out)
    if processor.num_query_tokens != NUM_QUERY_TOKENS or not hasattr(processor.image_token, "content"):
        raise RuntimeError(f"the reloaded processor lost num_query_tokens or its <image> AddedToken: {processor}")
    images = [
        Image.radial_gradient("L").convert("RGB").resize((80, 50)),
        Image.linear_gradient("L").convert("RGB").resize((50, 80)),
    ]
    image_id = model.config.image_token_id
    texts = []
    for image in images:
        inputs = processor(images=image, text="Question: Describe this photo in detail. Answer:", return_tensors="pt")
        ids = inputs["input_ids"][0].tolist()
        if ids[:NUM_QUERY_TOKENS] != [image_id] * NUM_QUERY_TOKENS or ids.count(image_id) != NUM_QUERY_TOKENS:
            raise RuntimeError(f"the processor does not put {NUM_QUERY_TOKENS} <image> tokens first: {ids}")
        with torch.no_grad():
            out_ids = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
        start = len(ids) if variant == "opt" else 1  # the prompt, or the decoder start token
        if out_ids.shape[1] != start + 6 or (variant == "opt" and out_ids[0, :start].tolist() != ids):
            raise RuntimeError(f"unexpected tiny BLIP-2 ({variant}) output: {out_ids.tolist()} for prompt {ids}")
        texts.append(processor.decode(out_ids[0, start:], skip_special_tokens=True))
    if texts[0] == texts[1]:
        raise RuntimeError(f"the tiny BLIP-2 ({variant}) ignores its input image: {texts[0]!r}")


def build(out: Path) -> None:
    for variant in VARIANTS:
        processor = make_processor(variant)
        make_model(processor, variant).save_pretrained(out / variant)
        processor.save_pretrained(out / variant)
        check(out / variant, variant)
    write_facts(out, query_tokens=NUM_QUERY_TOKENS)  # the Q-Former's query tokens, in every prompt


if __name__ == "__main__":
    sys.exit(cli(build))
