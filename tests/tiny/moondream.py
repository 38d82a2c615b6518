"""Build a tiny random Moondream2 from the REAL upstream remote code: `python -m tests.tiny.moondream OUT_DIR`
(tf4 env).

The 11 Python files of vikhyatk/moondream2 at tag 2025-06-21 are kept unmodified in
../shared/upstream/moondream2-2025-06-21/ (SOURCE.md there says where they come from and how sure
that is). They are laid out as an offline Hugging Face cache under OUT_DIR/hub:

    models--vikhyatk--moondream2/refs/2025-06-21          -> a made-up commit (the real one is unknown)
    models--vikhyatk--moondream2/snapshots/<commit>/       the upstream *.py, config.json, model.safetensors
    models--moondream--starmie-v1/...                      a stand-in tokenizer (the code fetches it by name)

so that the adapter's real load, `AutoModelForCausalLM.from_pretrained("vikhyatk/moondream2",
revision="2025-06-21", trust_remote_code=True)` with HF_HUB_CACHE=OUT_DIR/hub and the hub offline,
runs the upstream code. Quirks met (SOURCE.md): sizes hard-coded in the code (27x27 patch grid,
head dim 64, 2048 context) stay; `text.wte` is torch.empty, so every weight is drawn explicitly;
the config dict in config.json is dropped by HfConfig.__init__ and must be passed back with
`config=` (the adapter does). The tokenizer is a word-level stand-in covering all 51,200 ids, so
any generated id decodes to a word ("w123") and the templates' hard-coded ids stay valid.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

from tests.tiny import cli

ENV = "tf4"
# It sets HF_HUB_CACHE / HF_MODULES_CACHE before transformers is imported: built in a process of its own
# (tests/tiny_models.py), not with the env's other builds.
ALONE = True
# Registry entries this build stands in for -> the folder of the build their --weights names
# ("" = the build itself); tests/registry_coverage.py checks every entry has one.
COVERS = {
    "moondream2": "hub",  # a Hugging Face cache folder: its remote code loads only from that layout
}
# An infer option the adapter must answer with an error cell (tests/adapters/test_contract.py).
BAD_OPTION = {"ask": "everything"}

HUB_ID, REVISION = "vikhyatk/moondream2", "2025-06-21"
TOKENIZER_ID = "moondream/starmie-v1"
UPSTREAM = Path(__file__).resolve().parents[2].parent / "shared" / "upstream" / "moondream2-2025-06-21"
VOCAB = 51200
WORDS = (
    "room",
    "wall",
    "window",
    "door",
    "floor",
    "stairs",
    "corridor",
    "rust",
    "paint",
    "graffiti",
    "chair",
    "table",
    "light",
    "dust",
    "brick",
    "concrete",
    "broken",
    "old",
    "abandoned",
    "empty",
    "dark",
    "factory",
    "hall",
    "ceiling",
    "pipe",
    "glass",
    "wood",
    "metal",
)
TINY = {
    "text": dict(dim=128, ff_dim=256, n_layers=2, n_heads=2, n_kv_heads=2, max_context=2048),
    "vision": dict(
        enc_dim=64, enc_n_layers=27, enc_ff_dim=128, enc_n_heads=1, proj_out_dim=128, proj_inner_dim=256, max_crops=2
    ),
    "region": dict(dim=128, inner_dim=256),
}
# Matrices from N(0, 0.3), norms at weight 1 / bias 0: at a plain N(0, 0.02) the tiny model repeats
# one token whatever the image, which would make the tests' "the image reaches the model" check void.
WEIGHT_STD = 0.3


def _snapshot(hub: Path, repo: str, ref: str, commit: str) -> Path:
    root = hub / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / ref).write_text(commit)
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def make_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {f"<s{i}>": i for i in range(16)}  # bos/eos 0, answer 3, thinking 4, coord 5, ... special ids
    for word in WORDS:
        vocab[word] = len(vocab)
    vocab["[UNK]"] = len(vocab)
    for i in range(len(vocab), VOCAB):
        vocab[f"w{i}"] = i
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok.save(str(folder / "tokenizer.json"))


def build(out: Path) -> None:
    hub = out / "hub"
    os.environ["HF_HUB_OFFLINE"] = "1"  # else transformers retries the Hub for custom_generate/ for minutes
    os.environ["HF_HUB_CACHE"] = str(hub)
    os.environ["HF_MODULES_CACHE"] = str(out / "modules")
    make_tokenizer(_snapshot(hub, TOKENIZER_ID, "main", "0" * 40))
    files = sorted(UPSTREAM.glob("*.py"))
    if len(files) != 11:
        raise RuntimeError(f"expected the 11 upstream files in {UPSTREAM}, found {len(files)}")
    commit = hashlib.sha1(b"".join(f.read_bytes() for f in files)).hexdigest()  # made up: the real one is unknown
    snap = _snapshot(hub, HUB_ID, REVISION, commit)
    for f in files:
        shutil.copy(f, snap / f.name)
    (snap / "config.json").write_text(
        json.dumps(
            {
                "architectures": ["HfMoondream"],
                "model_type": "moondream1",
                "auto_map": {"AutoConfig": "hf_moondream.HfConfig", "AutoModelForCausalLM": "hf_moondream.HfMoondream"},
                "config": {},
            }
        )
    )

    import torch
    from transformers import AutoConfig
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(HUB_ID, revision=REVISION, trust_remote_code=True)
    config.config = TINY  # HfConfig.__init__ resets it to {}: set after construction
    model_class = get_class_from_dynamic_module("hf_moondream.HfMoondream", HUB_ID, revision=REVISION)
    model = model_class(config)
    with torch.no_grad():  # upstream leaves tensors as torch.empty and has no _init_weights
        for name, param in model.named_parameters():
            if param.dim() > 1:
                param.normal_(0.0, WEIGHT_STD)
            elif "weight" in name or name.endswith(".w"):
                param.fill_(1.0)
            else:
                param.zero_()
    tmp = out / "saved"
    model.save_pretrained(tmp)
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tmp / name, snap / name)
    shutil.rmtree(tmp)
    shutil.rmtree(out / "modules", ignore_errors=True)
    check(snap)


def check(snap: Path) -> None:
    """Reload through the Auto path, offline, and answer through the upstream API."""
    import torch
    from PIL import Image
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(HUB_ID, revision=REVISION, trust_remote_code=True)
    config.config = json.loads((snap / "config.json").read_text())["config"]
    model = AutoModelForCausalLM.from_pretrained(HUB_ID, revision=REVISION, config=config, trust_remote_code=True)
    settings = {"max_tokens": 6, "temperature": 0, "variant": None}
    images = [
        Image.radial_gradient("L").convert("RGB").resize((90, 60)),
        Image.linear_gradient("L").convert("RGB").resize((60, 90)),
    ]
    with torch.no_grad():
        captions = [model.caption(img, length="short", settings=settings)["caption"] for img in images]
    if not all(captions) or captions[0] == captions[1]:
        raise RuntimeError(f"the tiny Moondream2 gives empty or input-independent captions: {captions}")


if __name__ == "__main__":
    sys.exit(cli(build))
