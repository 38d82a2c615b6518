"""Build a tiny MiniCPM-V 4.5 INTERFACE STAND-IN: `python -m tests.tiny.minicpmv OUT_DIR` (tf4 env).

NOT the upstream code: the 4.5 remote code is not available offline (../shared/upstream/minicpm-v-4_5/
SOURCE.md). The snapshot's code is tests/tiny/standins/minicpmv_standin.py, written from the
documented API (AutoModel + AutoTokenizer with trust_remote_code, `model.chat(msgs, tokenizer,
enable_thinking=False)`), on a tiny Qwen3 LM and a tiny SigLIP vision tower, random weights. It is
laid out as an offline Hugging Face cache (OUT_DIR/hub/models--openbmb--MiniCPM-V-4_5, refs/<the
pinned commit>), so the adapter's pinned remote-code load runs as it would for a user; the adapter
and its tests check mltag's side of the interface, not MiniCPM-V's behaviour.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from tests.tiny import cli
from tests.tiny._common import qwen_style_bpe

ENV = "tf4"
# It sets HF_HUB_CACHE / HF_MODULES_CACHE before transformers is imported: built in a process of its own
# (tests/tiny_models.py), not with the env's other builds.
ALONE = True
# Registry entries this build stands in for -> the folder of the build their --weights names
# ("" = the build itself); tests/registry_coverage.py checks every entry has one.
COVERS = {
    "minicpm-v45": "hub/models--openbmb--MiniCPM-V-4_5/snapshots/fd3209b2e0580e346fc33d2c6f85b6e9332eecda",
}
# An infer option the adapter must answer with an error cell (tests/adapters/test_contract.py).
BAD_OPTION = {"ask": "everything"}

HUB_ID = "openbmb/MiniCPM-V-4_5"
REVISION = "fd3209b2e0580e346fc33d2c6f85b6e9332eecda"  # as envs/minicpm-v45/model.toml pins
STANDIN = Path(__file__).resolve().parent / "standins" / "minicpmv_standin.py"
CORPUS = [
    "Describe this photo in detail.",
    "List 15 to 30 short tags for this photo, separated by commas.",
    "an abandoned hall, broken windows, peeling paint, rust, a staircase, graffiti on a brick wall",
    "user assistant system",
]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "</image>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build(out: Path) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_CACHE"] = str(out / "hub")  # before transformers reads it at import
    os.environ["HF_MODULES_CACHE"] = str(out / "modules")
    import torch

    sys.path.insert(0, str(STANDIN.parent))
    from minicpmv_standin import MiniCPMV, MiniCPMVConfig

    tok = qwen_style_bpe(CORPUS, SPECIALS, chat_template=CHAT_TEMPLATE)
    torch.manual_seed(0)
    config = MiniCPMVConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        query_num=4,
        image_size=32,
        auto_map={"AutoConfig": "minicpmv_standin.MiniCPMVConfig", "AutoModel": "minicpmv_standin.MiniCPMV"},
    )
    model = MiniCPMV(config).eval()
    with torch.no_grad():  # wide weights: the text must depend on the image
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.3)
    root = out / "hub" / ("models--" + HUB_ID.replace("/", "--"))
    snap = root / "snapshots" / REVISION
    model.save_pretrained(snap)
    tok.save_pretrained(snap)
    shutil.copy(STANDIN, snap / STANDIN.name)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(REVISION)
    check(out / "hub")


def check(hub: Path) -> None:
    from PIL import Image
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(HUB_ID, revision=REVISION, trust_remote_code=True, attn_implementation="sdpa")
    tok = AutoTokenizer.from_pretrained(HUB_ID, revision=REVISION, trust_remote_code=True)
    answers = [
        model.chat(
            msgs=[{"role": "user", "content": [img, "Describe this photo in detail."]}],
            tokenizer=tok,
            enable_thinking=False,
            sampling=False,
            max_new_tokens=6,
            min_new_tokens=6,
        )
        for img in (Image.radial_gradient("L"), Image.linear_gradient("L"))
    ]
    if not all(answers) or answers[0] == answers[1]:
        raise RuntimeError(f"the tiny stand-in ignores its image or says nothing: {answers}")
    shutil.rmtree(hub.parent / "modules", ignore_errors=True)


if __name__ == "__main__":
    sys.exit(cli(build))
