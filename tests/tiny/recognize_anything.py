"""Build a tiny random RAM++ with the REAL `ram` package: `python -m tests.tiny.recognize_anything OUT_DIR` (ram env).

The ram env installs the unmodified `ram` wheel built from xinyu1205/recognize-anything at the
pinned commit (../shared/upstream/recognize-anything). The package's own builder makes the model:
`ram_plus(pretrained="", image_size=224, vit="base", text_encoder_type=<folder>)` (RAM++ with a ViT-B
image encoder: the smallest the package can build without editing it; 4,585 classes x 51
descriptions of label embedding), random weights, saved the way the released checkpoint is
(`torch.save({"model": state_dict})`, file ram_plus_swin_large_14m.pth) beside a tiny BERT
vocab.txt (the package only loads a tokenizer from `text_encoder_type`). Weights are stored in
float16 to halve the file (~440 MB); `load_state_dict` copies them into the float32 model.
Then the folder is reloaded through `ram_plus(pretrained=...)` + `inference_ram`, as the adapter does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.tiny import cli

ENV = "ram"
# Registry entries this build stands in for -> the folder of the build their --weights names
# ("" = the build itself); tests/registry_coverage.py checks every entry has one.
COVERS = {
    "ram-plus": "",
}
# An infer option the adapter must answer with an error cell (tests/adapters/test_contract.py).
BAD_OPTION = None  # its infer takes no option to get wrong

CHECKPOINT = "ram_plus_swin_large_14m.pth"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *["a", "the", "cat", "dog", "room", "wall", "window", "door"]]


def build(out: Path) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from ram.models import ram_plus

    (out / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    torch.manual_seed(0)
    model = ram_plus(pretrained="", image_size=224, vit="base", text_encoder_type=str(out)).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.02)
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    torch.save({"model": state}, out / CHECKPOINT)
    del model, state
    check(out)


def check(out: Path) -> None:
    import torch
    from PIL import Image
    from ram import get_transform, inference_ram
    from ram.models import ram_plus

    model = ram_plus(pretrained=str(out / CHECKPOINT), image_size=224, vit="base", text_encoder_type=str(out)).eval()
    if not torch.equal(model.label_embed.detach()[:3].half(), torch.load(out / CHECKPOINT)["model"]["label_embed"][:3]):
        raise RuntimeError("the saved label embedding did not load")
    image = get_transform(224)(Image.radial_gradient("L").convert("RGB")).unsqueeze(0)
    english, chinese = inference_ram(image, model)
    if not isinstance(english, str) or not isinstance(chinese, str):
        raise RuntimeError(f"unexpected inference_ram output: {english!r} {chinese!r}")


if __name__ == "__main__":
    sys.exit(cli(build))
