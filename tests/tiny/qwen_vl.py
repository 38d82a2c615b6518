"""Build tiny random Qwen2-VL and Qwen2.5-VL: `python -m tests.tiny.qwen_vl OUT_DIR` (modern env).

Writes two checkpoints, OUT_DIR/qwen2_5_vl and OUT_DIR/qwen2_vl (one adapter, runners/adapters/qwen_vl.py,
serves both), each the real native architecture (transformers' Qwen2_5_VLForConditionalGeneration
/ Qwen2VLForConditionalGeneration: ViT with 14 px patches merged 2 x 2, M-RoPE Qwen2 decoder) with
32-wide layers, laid out like the Qwen/*-Instruct repos, so that the tests load what those serve:
- model.safetensors with the repos' tensor names (`model.layers.*`, `visual.*`, `lm_head.*`: transformers
  5 writes those names back on save, and renames them on load);
- config.json in the repos' legacy flat format (text settings at the top level, rope_scaling
  {"type": "mrope"}, vision_config without model_type), which transformers 5 converts on load;
- preprocessor_config.json with top-level min_pixels / max_pixels (the repos' keys; the adapter
  overrides them with `size=` at every call) and no separate video processor config;
- chat_template.json holding the repos' chat template verbatim (default system message "You are
  a helpful assistant.", `<|vision_start|><|image_pad|><|vision_end|>` per image);
- a byte-level BPE tokenizer trained offline with the ChatML and vision specials, `<|im_end|>` and
  `<|endoftext|>` as EOS, `<|endoftext|>` as padding (as in the repos' generation_config.json).
The patch geometry is the real one, so image token counts are the real models' (one per 28 x 28
px of the resized image). Each folder is then reloaded offline and checked: the repos' pixel keys
are read, a pixel budget given as `size` reaches the image token count, and the output depends on
the image. Offline, seeded, < 1 MB each. Weights are wider than the default init (WEIGHT_STD).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.tiny import cli
from tests.tiny._common import qwen_style_bpe, widen_weights

ENV = "modern"
# Registry entries this build stands in for -> the folder of the build their --weights names
# ("" = the build itself); tests/registry_coverage.py checks every entry has one.
COVERS = {
    "qwen25vl": "qwen2_5_vl",
    "qwen2vl-2b": "qwen2_vl",
    "qwen2vl": "qwen2_vl",
}
# An infer option the adapter must answer with an error cell (tests/adapters/test_contract.py).
BAD_OPTION = {"ask": "everything"}

ARCHITECTURES = {"qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration", "qwen2_vl": "Qwen2VLForConditionalGeneration"}
PROCESSORS = {"qwen2_5_vl": "Qwen2_5_VLProcessor", "qwen2_vl": "Qwen2VLProcessor"}
VISION = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *VISION.values()]
CORPUS = [
    "system",
    "user",
    "assistant",
    "You are a helpful assistant.",
    "Describe this photo in detail.",
    "List short tags for this photo, comma-separated.",
    "An abandoned factory hall with broken windows and peeling paint.",
    "factory, broken window, rust, graffiti, staircase, decay",
    "A dark corridor with doors, debris on the floor and light from a skylight.",
]
# The Qwen2-VL / Qwen2.5-VL -Instruct repos' chat_template.json, verbatim.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: "
    "{% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% endif %}"
)
# The repos' preprocessor_config.json values (CLIP mean/std; 4 to 16384 image tokens).
MEAN, STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
MIN_PIXELS, MAX_PIXELS = 3136, 12845056
PATCH, MERGE, TEMPORAL = 14, 2, 2
HIDDEN = 32
MROPE_SECTION = [2, 3, 3]  # sums to head_dim / 2 = (32 / 2 heads) / 2
WEIGHT_STD = 0.3


def make_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    return qwen_style_bpe(CORPUS, SPECIALS, extra_special_tokens=VISION)


def vision_config(family: str) -> dict:
    if family == "qwen2_5_vl":  # window attention on 112 px windows; the last block attends fully
        return dict(
            depth=2,
            hidden_size=HIDDEN,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=HIDDEN,
            patch_size=PATCH,
            spatial_merge_size=MERGE,
            temporal_patch_size=TEMPORAL,
            window_size=112,
            fullatt_block_indexes=[1],
        )
    return dict(
        depth=1,
        embed_dim=HIDDEN,
        hidden_size=HIDDEN,
        mlp_ratio=2,
        num_heads=2,
        patch_size=PATCH,
        spatial_merge_size=MERGE,
        temporal_patch_size=TEMPORAL,
    )


def make_model(family: str, tok):  # -> Qwen2_5_VLForConditionalGeneration | Qwen2VLForConditionalGeneration
    import torch
    import transformers

    ids = {f"{name}_id": tok.convert_tokens_to_ids(token) for name, token in VISION.items()}
    eos = [tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id]
    text = dict(
        vocab_size=len(tok),
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "mrope_section": MROPE_SECTION, "rope_theta": 1e6},
        bos_token_id=tok.pad_token_id,
        eos_token_id=eos,
        pad_token_id=tok.pad_token_id,
    )
    config_class = getattr(transformers, ARCHITECTURES[family].replace("ForConditionalGeneration", "Config"))
    torch.manual_seed(0)
    config = config_class(text_config=text, vision_config=vision_config(family), **ids)
    model = getattr(transformers, ARCHITECTURES[family])(config).eval()
    widen_weights(model, WEIGHT_STD)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


def make_processor(family: str, tok):  # -> Qwen2_5_VLProcessor | Qwen2VLProcessor
    import transformers
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    ip = Qwen2VLImageProcessor(
        min_pixels=MIN_PIXELS,
        max_pixels=MAX_PIXELS,
        image_mean=MEAN,
        image_std=STD,
        patch_size=PATCH,
        merge_size=MERGE,
        temporal_patch_size=TEMPORAL,
    )
    vp = Qwen2VLVideoProcessor(image_mean=MEAN, image_std=STD)
    return getattr(transformers, PROCESSORS[family])(
        image_processor=ip, tokenizer=tok, video_processor=vp, chat_template=CHAT_TEMPLATE
    )


def legacy_layout(family: str, out: Path) -> None:
    """Rewrite the saved configs into the Hub repos' older layout (see the module docstring)."""
    config = json.loads((out / "config.json").read_text())
    text = config.pop("text_config")
    for key in (
        "model_type",
        "architectures",
        "dtype",
        "layer_types",
        "use_sliding_window",
        "sliding_window",
        "max_window_layers",
    ):
        text.pop(key, None)
    rope = text.pop("rope_parameters")
    legacy = {
        "architectures": [ARCHITECTURES[family]],
        "model_type": family,
        **text,
        "rope_scaling": {"type": "mrope", "mrope_section": rope["mrope_section"]},
        "rope_theta": rope["rope_theta"],
        "use_sliding_window": False,
        "sliding_window": 4096,
        "max_window_layers": 2,
        **{k: v for k, v in config.items() if k.endswith("_token_id")},
        "tie_word_embeddings": config["tie_word_embeddings"],
        "vision_config": legacy_vision(config["vision_config"]),
        "torch_dtype": "float32",
    }
    (out / "config.json").write_text(json.dumps(legacy, indent=2))
    (out / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "min_pixels": MIN_PIXELS,
                "max_pixels": MAX_PIXELS,
                "patch_size": PATCH,
                "temporal_patch_size": TEMPORAL,
                "merge_size": MERGE,
                "image_mean": MEAN,
                "image_std": STD,
                "image_processor_type": "Qwen2VLImageProcessor",
                "processor_class": PROCESSORS[family],
            },
            indent=2,
        )
    )
    (out / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}, indent=2))
    for name in ("processor_config.json", "video_preprocessor_config.json", "chat_template.jinja"):
        (out / name).unlink(missing_ok=True)


def legacy_vision(vision: dict) -> dict:
    """The repos' vision_config: no model_type or rope settings, and two keys of the original code."""
    kept = {k: v for k, v in vision.items() if k not in ("model_type", "rope_parameters", "initializer_range")}
    return {**kept, "in_chans": kept.pop("in_channels", 3), "spatial_patch_size": PATCH}


def check(family: str, out: Path, built) -> None:
    """The folder must reload offline to the weights built, read the repos' pixel keys, resize as asked,
    and see the image."""
    import torch
    import transformers
    from PIL import Image
    from transformers import AutoProcessor

    model = getattr(transformers, ARCHITECTURES[family]).from_pretrained(out).eval()
    reloaded = model.state_dict()
    for name, tensor in built.state_dict().items():
        if not torch.equal(reloaded[name], tensor):
            raise RuntimeError(f"{name} did not reload from the legacy tensor names")
    processor = AutoProcessor.from_pretrained(out)
    size = processor.image_processor.size
    if (size.shortest_edge, size.longest_edge) != (MIN_PIXELS, MAX_PIXELS):
        raise RuntimeError(f"preprocessor_config.json min_pixels/max_pixels were not read: {size}")
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this photo."}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    if not prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>"):
        raise RuntimeError(f"unexpected chat template output: {prompt!r}")
    images = [
        Image.radial_gradient("L").convert("RGB").resize((448, 224)),
        Image.linear_gradient("L").convert("RGB").resize((224, 224)),
    ]
    texts, image_tokens = [], []
    for image in images:  # the adapter's call: the pixel budget as `size`, here 16 tokens at most
        inputs = processor(
            images=image,
            text=prompt,
            size={"shortest_edge": MIN_PIXELS, "longest_edge": 16 * 28 * 28},
            return_tensors="pt",
        )
        image_tokens.append(int((inputs["input_ids"] == processor.image_token_id).sum()))
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
        texts.append(processor.decode(ids[0, inputs["input_ids"].shape[1] :]))
    # 448 x 224 -> 140 x 56 px = 5 x 2 tokens; 224 x 224 -> 112 x 112 px = 4 x 4 tokens
    if image_tokens != [10, 16]:
        raise RuntimeError(f"the pixel budget does not reach the image tokens: {image_tokens}")
    if texts[0] == texts[1]:
        raise RuntimeError(f"the tiny {family} ignores its input image: {texts[0]!r}")


def build(out: Path) -> None:
    tok = make_tokenizer()
    for family in ARCHITECTURES:
        folder = out / family
        model = make_model(family, tok)
        model.save_pretrained(folder)
        make_processor(family, tok).save_pretrained(folder)
        legacy_layout(family, folder)
        check(family, folder, model)


if __name__ == "__main__":
    sys.exit(cli(build))
