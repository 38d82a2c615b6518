"""Build a tiny random SigLIP in open_clip's hub layout: `python -m tests.tiny.siglip OUT_DIR` (modern env).

The architecture of open_clip's ViT-SO400M-16-SigLIP2-384, made small: a CustomTextCLIP with a
timm ViT image tower pooled by attention (MAP head, no projection, as SigLIP), a non-causal text
transformer pooled on its last token with a biased projection, and a learned logit_bias (the
sigmoid loss's), initialised to -10 as SigLIP's config says. Differences, so that it builds
offline and small: timm's vit_tiny_patch16_224 (192 wide, 12 layers, 5.7 M params) instead of
vit_so400m_patch16_siglip_384, and open_clip's built-in CLIP BPE tokenizer instead of SigLIP 2's
Gemma tokenizer (a Hub download). Writes OUT_DIR/open_clip_config.json and
OUT_DIR/open_clip_model.safetensors, then checks they load back the same through `local-dir:`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.tiny import cli

ENV = "modern"
# Registry entries this build stands in for -> the folder of the build their --weights names
# ("" = the build itself); tests/registry_coverage.py checks every entry has one.
COVERS = {
    "siglip": "",
}
# An infer option the adapter must answer with an error cell (tests/adapters/test_contract.py).
BAD_OPTION = None  # its infer takes no option to get wrong (vocabulary and score mode are load options)

MODEL_CFG = {
    "embed_dim": 192,
    "init_logit_bias": -10,
    "custom_text": True,
    "vision_cfg": {
        "image_size": 224,
        "timm_model_name": "vit_tiny_patch16_224",
        "timm_model_pretrained": False,
        "timm_pool": "map",
        "timm_proj": "none",
    },
    "text_cfg": {
        "context_length": 64,
        "vocab_size": 49408,
        "width": 32,
        "heads": 2,
        "layers": 2,
        "no_causal_mask": True,
        "proj_bias": True,
        "pool_type": "last",
        "norm_kwargs": {"eps": 1e-6},
        "act_kwargs": {"approximate": "tanh"},
    },
}
# SigLIP's normalisation (0.5 mean and std) and a squash to the input size, as open_clip's _slpcfg.
PREPROCESS_CFG = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "interpolation": "bicubic", "resize_mode": "squash"}


def build(out: Path) -> None:
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.CustomTextCLIP(**{k: v for k, v in MODEL_CFG.items() if k != "custom_text"}).eval()
    (out / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": MODEL_CFG, "preprocess_cfg": PREPROCESS_CFG}, indent=2) + "\n"
    )
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))
    check(model, out)


def check(model, out: Path) -> None:  # noqa: ANN001 - torch is imported lazily
    """The saved folder must load through `local-dir:` into the same model, with its logit_bias."""
    import open_clip
    import torch

    loaded, _, _ = open_clip.create_model_and_transforms(f"local-dir:{out}")
    loaded.eval()
    if getattr(loaded, "logit_bias", None) is None or float(loaded.logit_bias.detach()) != -10.0:
        raise RuntimeError("the reloaded model has no SigLIP logit_bias of -10")
    tokens = open_clip.get_tokenizer(f"local-dir:{out}")(["a photo of a factory"])
    image = torch.rand(1, 3, 224, 224)
    with torch.inference_mode():
        same = torch.allclose(model.encode_image(image), loaded.encode_image(image)) and torch.allclose(
            model.encode_text(tokens), loaded.encode_text(tokens)
        )
    if not same:
        raise RuntimeError("the reloaded tiny SigLIP differs from the one that was saved")


if __name__ == "__main__":
    sys.exit(cli(build))
