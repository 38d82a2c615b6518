"""The adapters' pure functions (option parsing, checkpoint checks, prompts, cache keys): no model, no env.

The runners' modules import their model libraries lazily, so these run in the orchestrator's venv.
The end-to-end adapter tests are tests/adapters/.
"""

from __future__ import annotations

import pytest

from runners.adapters.clip_zeroshot import _templates, _TextCache, _vocabulary
from runners.adapters.internvl import check_native, native_repo, tiling
from runners.adapters.paligemma import model_prompt
from runners.adapters.qwen_vl import DEFAULT_PIXELS, model_class_for, pixel_bounds


# -- clip_zeroshot ---------------------------------------------------------------------------------
def test_templates_need_exactly_one_placeholder() -> None:
    assert _templates({}) == ["a photo of {}"]
    assert _templates({"templates": "art: {}"}) == ["art: {}"]
    for bad in (["a photo"], ["{} and {}"], []):
        with pytest.raises(ValueError, match="template"):
            _templates({"templates": bad})


def test_vocabulary_must_be_a_non_empty_list() -> None:
    assert _vocabulary({"vocabulary": [" rust ", "rust", "mold", ""]}) == ["rust", "mold"]
    for bad in ("urbex", [], ["", " "], None):
        with pytest.raises(ValueError):
            _vocabulary({"vocabulary": bad})


def test_cache_key_covers_everything_that_changes_the_embeddings() -> None:
    base = {
        "format": 1,
        "model": "m",
        "version": "r1",
        "quick_gelu": True,
        "precision": "float32",
        "templates": ["a photo of {}"],
        "vocabulary": ["rust", "mold"],
    }
    key = _TextCache(None, base).key
    assert _TextCache(None, dict(base)).key == key
    for field, value in [
        ("model", "m2"),
        ("version", "r2"),
        ("precision", "bfloat16"),
        ("templates", ["a {}"]),
        ("vocabulary", ["mold", "rust"]),
    ]:
        assert _TextCache(None, {**base, field: value}).key != key, field


# -- internvl --------------------------------------------------------------------------------------
def test_tiling_options() -> None:
    assert tiling({}, "cpu") == {"crop_to_patches": False, "max_patches": 1}
    assert tiling({}, "cuda") == {"crop_to_patches": True, "max_patches": 12}
    assert tiling({"max_patches": {"cpu": 2}}, "cpu") == {"crop_to_patches": True, "max_patches": 2}
    assert tiling({"max_patches": {"cpu": 2}}, "mps") == {"crop_to_patches": True, "max_patches": 6}
    assert tiling({"max_patches": 4, "crop_to_patches": False}, "cuda") == {"crop_to_patches": False, "max_patches": 1}
    for bad in ({"max_patches": True}, {"max_patches": 2.5}, {"max_patches": {"tpu": 2}}, {"crop_to_patches": 1}):
        with pytest.raises(ValueError, match=f"option {next(iter(bad))}"):
            tiling(bad, "cpu")


def test_only_native_checkpoints_load() -> None:
    assert (
        native_repo("OpenGVLab/InternVL3-8B") == native_repo("OpenGVLab/InternVL3-8B-hf") == "OpenGVLab/InternVL3-8B-hf"
    )
    check_native({"model_type": "internvl"}, "x", "OpenGVLab/InternVL3-8B-hf")
    with pytest.raises(
        ValueError, match="remote-code InternVL checkpoint.*use the native transformers port OpenGVLab/InternVL3-8B-hf"
    ):
        check_native({"model_type": "internvl_chat"}, "/models/InternVL3-8B", "OpenGVLab/InternVL3-8B-hf")
    with pytest.raises(ValueError, match="model_type 'llava', expected 'internvl'"):
        check_native({"model_type": "llava"}, "/models/llava", "OpenGVLab/InternVL3-8B-hf")


# -- paligemma -------------------------------------------------------------------------------------
def test_model_prompt_puts_one_image_token_first() -> None:
    assert model_prompt("describe en") == "<image>describe en"
    assert model_prompt("  caption en\n") == "<image>caption en"  # the processor appends the "\n" itself
    with pytest.raises(ValueError, match="must not contain <image>"):
        model_prompt("<image>caption en")


# -- qwen_vl ---------------------------------------------------------------------------------------
def test_model_class_for() -> None:
    assert model_class_for({"model_type": "qwen2_5_vl"}, "x") == "Qwen2_5_VLForConditionalGeneration"
    assert model_class_for({"model_type": "qwen2_vl"}, "x") == "Qwen2VLForConditionalGeneration"
    with pytest.raises(ValueError, match="remote-code checkpoint"):
        model_class_for({"model_type": "qwen", "auto_map": {}}, "/models/Qwen-VL-Chat")
    with pytest.raises(ValueError, match="model_type 'qwen3_vl', expected one of qwen2_5_vl, qwen2_vl"):
        model_class_for({"model_type": "qwen3_vl"}, "/models/Qwen3-VL")


def test_pixel_bounds() -> None:
    assert pixel_bounds({}, "cpu") == (3136, 256 * 784)
    assert pixel_bounds({}, "cuda") == (3136, 1280 * 784)
    assert pixel_bounds({"max_pixels": {"cpu": 784 * 64}}, "cpu") == (3136, 784 * 64)
    assert pixel_bounds({"max_pixels": {"cpu": 784 * 64}}, "mps") == (3136, DEFAULT_PIXELS["max_pixels"]["mps"])
    assert pixel_bounds({"min_pixels": 784, "max_pixels": 784}, "cuda") == (784, 784)
    for bad, named in (
        ({"max_pixels": True}, "max_pixels"),
        ({"min_pixels": 2.5e5}, "min_pixels"),
        ({"max_pixels": 700}, "max_pixels"),
        ({"max_pixels": {"tpu": 784}}, "max_pixels"),
        ({"min_pixels": 10 * 784, "max_pixels": 784}, "min_pixels"),
    ):
        with pytest.raises(ValueError, match=f"load option {named}"):
            pixel_bounds(bad, "cpu")
