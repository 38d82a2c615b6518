"""Every registry entry has its tiny builder and adapter test (tests/registry_coverage.py),
and adding a checkpoint of an existing family is its model.toml plus one line in the family's builder."""

from __future__ import annotations

import shutil
from pathlib import Path

from orchestrator.models.registry import load_registry
from orchestrator.paths import ENVS_DIR
from tests.registry_coverage import (
    ADAPTERS_DIR,
    TINY_DIR,
    builder_of,
    checkpoints,
    missing_pieces,
)


def test_every_registry_entry_has_a_tiny_builder_and_an_adapter_test() -> None:
    registry = load_registry()
    assert missing_pieces(registry) == []
    # what the check reads is really there: every built entry has a builder
    assert {name for name, spec in registry.items() if not spec.server} == {
        name for name in registry if builder_of(name) is not None
    }


def _checkout(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of envs/ and tests/tiny/ to add a model to."""
    envs, tiny = tmp_path / "envs", tmp_path / "tiny"
    shutil.copytree(ENVS_DIR, envs)
    shutil.copytree(TINY_DIR, tiny, ignore=shutil.ignore_patterns("__pycache__"))
    return envs, tiny


def test_a_new_checkpoint_of_a_family_is_its_model_toml_and_one_builder_line(tmp_path: Path) -> None:
    """The experiment of issue 12: wd14-convnext, one more WD v3 tagger on runners/adapters/wd14.py."""
    envs, tiny = _checkout(tmp_path)
    (envs / "wd14-convnext").mkdir()
    (envs / "wd14-convnext" / "model.toml").write_text(
        (envs / "wd14" / "model.toml")
        .read_text()
        .replace("SmilingWolf/wd-vit-tagger-v3", "SmilingWolf/wd-convnext-tagger-v3")
        .replace("7f6b584d0bd3f55c4531f14ba3d4761b2bccdc0f", "0" * 40)
    )
    registry = load_registry(envs)
    assert registry["wd14-convnext"].adapter == "runners.adapters.wd14"

    def missing() -> list[str]:
        return missing_pieces(registry, tiny, ADAPTERS_DIR)

    # the model.toml alone: the registry test names the missing piece (the family's test exists)
    assert missing() == [
        "wd14-convnext: no tiny builder; add a line for it to COVERS in its family's tests/tiny/*.py",
    ]

    # one line in the family's builder: its tiny build now stands in for the new checkpoint
    builder = tiny / "wd14.py"
    text = builder.read_text()
    assert '    "wd14-eva02": "",\n' in text
    builder.write_text(text.replace('    "wd14-eva02": "",\n', '    "wd14-eva02": "",\n    "wd14-convnext": "",\n'))
    assert builder_of("wd14-convnext", tiny) == ("wd14", "")
    assert missing() == []


def test_a_new_family_needs_a_builder_and_an_adapter_test(tmp_path: Path) -> None:
    envs, tiny = _checkout(tmp_path)
    (envs / "newfam").mkdir()
    (envs / "newfam" / "model.toml").write_text(
        (envs / "wd14" / "model.toml")
        .read_text()
        .replace('adapter = "runners.adapters.wd14"', 'adapter = "runners.adapters.newfam"')
    )
    assert missing_pieces(load_registry(envs), tiny, ADAPTERS_DIR) == [
        "newfam: no tiny builder; add a line for it to COVERS in its family's tests/tiny/*.py",
        "newfam: no adapter test; write tests/adapters/test_newfam.py",
    ]


def test_covers_that_name_no_model_or_one_model_twice_are_reported(tmp_path: Path) -> None:
    envs, tiny = _checkout(tmp_path)
    registry = load_registry(envs)
    (tiny / "wd14_wide.py").write_text(
        (tiny / "wd14_wide.py")
        .read_text()
        .replace("COVERS: dict[str, str] = {}", 'COVERS = {"wd14": "", "wd14-gone": ""}')
    )
    (tiny / "blip.py").write_text((tiny / "blip.py").read_text().replace("COVERS = ", "BUILDS = "))
    assert missing_pieces(registry, tiny, ADAPTERS_DIR) == [
        "tests/tiny/blip.py: no COVERS (the registry entries it builds for, or {})",
        "tests/tiny/wd14_wide.py: COVERS names 'wd14-gone', with no envs/wd14-gone/model.toml",
        "blip: no tiny builder; add a line for it to COVERS in its family's tests/tiny/*.py",
        "wd14: covered by several tiny builders (wd14, wd14_wide); keep one",
    ]


def test_one_model_per_checkpoint_folder() -> None:
    assert checkpoints("qwen_vl") == {"qwen2_5_vl": "qwen25vl", "qwen2_vl": "qwen2vl-2b"}
    assert checkpoints("blip2") == {"opt": "blip2", "flan-t5": "blip2-flan"}
