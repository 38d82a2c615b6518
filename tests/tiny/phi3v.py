"""Build a tiny Phi-3.5-vision INTERFACE STAND-IN: `python -m tests.tiny.phi3v OUT_DIR` (legacy env).

NOT the upstream code: Phi-3.5-vision's remote code is not available offline
(../shared/upstream/phi-3_5-vision/SOURCE.md). The snapshot's code is
tests/tiny/standins/phi3v_standin.py, written from the model card's documented usage
(AutoModelForCausalLM + AutoProcessor with trust_remote_code, num_crops, the `<|image_1|>` chat
prompt, generate), on transformers' Phi3 decoder and a CLIP vision tower, tiny and random. Laid out
as an offline Hugging Face cache snapshot (OUT_DIR/hub/models--microsoft--Phi-3.5-vision-instruct)
at the pinned commit, so the adapter's pinned remote-code load runs as it would for a user.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from tests.tiny import cli
from tests.tiny._common import byte_level_bpe

ENV = "legacy"
# It sets HF_HUB_CACHE / HF_MODULES_CACHE before transformers is imported: built in a process of its own
# (tests/tiny_models.py), not with the env's other builds.
ALONE = True
# Registry entries this build stands in for -> the folder of the build their --weights names
# ("" = the build itself); tests/registry_coverage.py checks every entry has one.
COVERS = {
    "phi35-vision": "hub/models--microsoft--Phi-3.5-vision-instruct/snapshots/c68f85286eac3fb376a17068e820e738a89c194a",
}
# An infer option the adapter must answer with an error cell (tests/adapters/test_contract.py).
BAD_OPTION = {"ask": "everything"}

HUB_ID = "microsoft/Phi-3.5-vision-instruct"
REVISION = "c68f85286eac3fb376a17068e820e738a89c194a"  # as envs/phi35-vision/model.toml pins
STANDIN = Path(__file__).resolve().parent / "standins" / "phi3v_standin.py"
SPECIALS = ["<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>", "<|image|>", "<|image_1|>"]
CORPUS = [
    "Describe this photo in detail.",
    "List 15 to 30 short tags for this photo, separated by commas.",
    "an abandoned hall, broken windows, peeling paint, rust, a staircase, graffiti on a brick wall",
]
# The card's format: <|user|>\n<|image_1|>\n{prompt}<|end|>\n<|assistant|>\n
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|' + m['role'] + '|>\n' + m['content'] + '<|end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
IMAGE_TOKENS = 4


def build(out: Path) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_CACHE"] = str(out / "hub")
    os.environ["HF_MODULES_CACHE"] = str(out / "modules")
    import torch
    from transformers import CLIPImageProcessor, PreTrainedTokenizerFast

    sys.path.insert(0, str(STANDIN.parent))
    from phi3v_standin import Phi3VConfig, Phi3VForCausalLM

    tok = PreTrainedTokenizerFast(
        tokenizer_object=byte_level_bpe(CORPUS, SPECIALS),
        eos_token="<|end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )
    torch.manual_seed(0)
    config = Phi3VConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        original_max_position_embeddings=512,
        rope_scaling=None,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        image_tokens=IMAGE_TOKENS,
        image_token_id=tok.convert_tokens_to_ids("<|image|>"),
        auto_map={
            "AutoConfig": "phi3v_standin.Phi3VConfig",
            "AutoModelForCausalLM": "phi3v_standin.Phi3VForCausalLM",
            "AutoProcessor": "phi3v_standin.Phi3VProcessor",
        },
    )
    model = Phi3VForCausalLM(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0.0, 0.3)
    root = out / "hub" / ("models--" + HUB_ID.replace("/", "--"))
    snap = root / "snapshots" / REVISION
    model.save_pretrained(snap)
    tok.save_pretrained(snap)
    CLIPImageProcessor(
        size={"height": 32, "width": 32}, crop_size={"height": 32, "width": 32}, do_center_crop=False
    ).save_pretrained(snap)
    pre = json.loads((snap / "preprocessor_config.json").read_text())
    pre.update(image_tokens=IMAGE_TOKENS, auto_map={"AutoProcessor": "phi3v_standin.Phi3VProcessor"})
    (snap / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    shutil.copy(STANDIN, snap / STANDIN.name)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(REVISION)
    check()
    shutil.rmtree(out / "modules", ignore_errors=True)


def check() -> None:
    from PIL import Image
    from transformers import AutoModelForCausalLM, AutoProcessor

    model = AutoModelForCausalLM.from_pretrained(
        HUB_ID, revision=REVISION, trust_remote_code=True, torch_dtype="auto", _attn_implementation="eager"
    )
    processor = AutoProcessor.from_pretrained(HUB_ID, revision=REVISION, trust_remote_code=True, num_crops=16)
    assert processor.num_crops == 16
    prompt = processor.tokenizer.apply_chat_template(
        [{"role": "user", "content": "<|image_1|>\nDescribe."}], tokenize=False, add_generation_prompt=True
    )
    texts = []
    for image in (Image.radial_gradient("L").convert("RGB"), Image.linear_gradient("L").convert("RGB")):
        inputs = processor(prompt, [image], return_tensors="pt")
        ids = model.generate(
            **inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False, eos_token_id=processor.tokenizer.eos_token_id
        )
        texts.append(processor.batch_decode(ids[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0])
    if texts[0] == texts[1] or not all(texts):
        raise RuntimeError(f"the tiny stand-in ignores its image or says nothing: {texts}")


if __name__ == "__main__":
    sys.exit(cli(build))
