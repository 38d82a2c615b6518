"""What the tiny builders share (runs inside a model env, like every builder here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_facts(out: Path, **facts: Any) -> None:
    """The build's facts the tests read (tests/adapters/conftest.py `facts`) instead of restating them:
    facts.json beside the model (image tokens, query tokens, ...)."""
    (out / "facts.json").write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")


def byte_level_bpe(corpus: list[str], specials: list[str], vocab_size: int = 400):  # -> tokenizers.Tokenizer
    """A small byte-level BPE trained on `corpus` (GPT-2 style, as Qwen2, OPT, BART and Gemma-like
    tiny vocabularies here): the byte alphabet is in it, so any text encodes and nothing is <unk>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        corpus * 4,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    return tok


def qwen_style_bpe(corpus: list[str], specials: list[str], **fast_kwargs: Any):  # -> PreTrainedTokenizerFast
    """Qwen2's conventions on byte_level_bpe: no BOS, <|im_end|> ends, <|endoftext|> pads.

    `specials` must contain "<|endoftext|>" and "<|im_end|>"; `fast_kwargs` go to
    PreTrainedTokenizerFast (chat_template, extra_special_tokens, ...).
    """
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=byte_level_bpe(corpus, specials),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        **fast_kwargs,
    )


def widen_weights(model: Any, std: float) -> None:
    """Redraw every weight matrix from N(0, std): wider than the default init, so a tiny random
    model's output depends on its input (the image, the prompt) instead of being near-constant."""
    import torch

    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, std)
