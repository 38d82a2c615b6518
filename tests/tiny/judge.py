"""Build a tiny random Qwen2 causal LM for the judge: `python -m tests.tiny.judge OUT_DIR` (modern env).

The real judge's architecture (Qwen2ForCausalLM, loaded through AutoModelForCausalLM) with 32-wide
layers, a byte-level BPE tokenizer trained offline, and a ChatML chat template like Qwen's
(`<|im_start|>role ... <|im_end|>`). Writes config.json, generation_config.json,
model.safetensors and the tokenizer files, then reloads the folder and generates once.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.tiny import cli
from tests.tiny._common import qwen_style_bpe, widen_weights

ENV = "modern"
# Registry entries this build stands in for -> the folder of the build their --weights names
# ("" = the build itself); tests/registry_coverage.py checks every entry has one.
COVERS = {
    "qwen25-judge": "",
}
# An infer option the adapter must answer with an error cell (tests/adapters/test_contract.py).
BAD_OPTION = {"max_tags_per_model": 0}

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "system",
    "user",
    "assistant",
    "DESCRIPTION: An abandoned factory hall with broken windows.",
    "TAGS: factory, broken window, rust, graffiti, decay",
    "Model outputs for one photo:",
    "caption: a dark corridor with peeling paint",
    "tags: corridor, peeling paint, door",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WEIGHT_STD = 0.3  # wider than the default init, so the output depends on the prompt


def make_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    return qwen_style_bpe(CORPUS, SPECIALS, chat_template=CHAT_TEMPLATE)


def make_model(tok):  # -> Qwen2ForCausalLM
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(config).eval()
    widen_weights(model, WEIGHT_STD)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


def check(out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    texts = []
    for content in ("tags: rust, door", "caption: a corridor with peeling paint and a broken window"):
        inputs = tok.apply_chat_template(
            [{"role": "user", "content": content}],
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
        )
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
        if ids.shape[1] != inputs["input_ids"].shape[1] + 6:
            raise RuntimeError(f"unexpected tiny judge output shape {ids.shape}")
        texts.append(tok.decode(ids[0, inputs["input_ids"].shape[1] :]))
    if texts[0] == texts[1]:
        raise RuntimeError(f"the tiny judge ignores its prompt: {texts[0]!r}")


def build(out: Path) -> None:
    tok = make_tokenizer()
    make_model(tok).save_pretrained(out)
    tok.save_pretrained(out)
    check(out)


if __name__ == "__main__":
    sys.exit(cli(build))
