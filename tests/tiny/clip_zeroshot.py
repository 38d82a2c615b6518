"""Build a tiny random CLIP in open_clip's hub layout: `python -m tests.tiny.clip_zeroshot OUT_DIR` (modern env).

The real ViT CLIP architecture of ViT-L-14-quickgelu (open_clip.CLIP, QuickGELU, causal text
transformer, the 49408-token BPE vocabulary that ships in the open_clip wheel), but 32 wide and
2 deep, at 64 px. Writes OUT_DIR/open_clip_config.json (model_cfg + preprocess_cfg, OpenAI's
normalisation) and OUT_DIR/open_clip_model.safetensors, then loads them back through the
adapter's `local-dir:` route and checks the outputs match. Offline, seeded, ~7 MB.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.tiny import cli

ENV = "modern"
# Registry entries this build stands in for -> the folder of the build their --weights names
# ("" = the build itself); tests/registry_coverage.py checks every entry has one.
COVERS = {
    "clip": "",
}
# An infer option the adapter must answer with an error cell (tests/adapters/test_contract.py).
BAD_OPTION = None  # its infer takes no option to get wrong (vocabulary and score mode are load options)

MODEL_CFG: dict[str, Any] = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
PREPROCESS_CFG = {
    "mean": [0.48145466, 0.4578275, 0.40821073],
    "std": [0.26862954, 0.26130258, 0.27577711],
    "interpolation": "bicubic",
    "resize_mode": "shortest",
}


def build(out: Path, model_cfg: dict[str, Any] = MODEL_CFG) -> None:
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.CLIP(**model_cfg).eval()
    (out / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": PREPROCESS_CFG}, indent=2) + "\n"
    )
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))
    check(model, out)


def check(model, out: Path) -> None:  # noqa: ANN001 - torch is imported lazily
    """The saved folder must load through `local-dir:` into the same QuickGELU model."""
    import open_clip
    import torch
    from open_clip.transformer import QuickGELU

    loaded, _, _ = open_clip.create_model_and_transforms(f"local-dir:{out}")
    loaded.eval()
    if not any(isinstance(m, QuickGELU) for m in loaded.modules()):
        raise RuntimeError("the reloaded model does not use QuickGELU")
    tokens = open_clip.get_tokenizer(f"local-dir:{out}")(["a photo of a factory"])
    image = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        same = torch.allclose(model.encode_image(image), loaded.encode_image(image)) and torch.allclose(
            model.encode_text(tokens), loaded.encode_text(tokens)
        )
    if not same:
        raise RuntimeError("the reloaded tiny CLIP differs from the one that was saved")


if __name__ == "__main__":
    sys.exit(cli(build))
