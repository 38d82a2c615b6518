"""Every registry entry is under test (tests/registry_coverage.py): a built model has a tiny builder,
so tests/adapters/test_contract.py runs for it; a served one has its stand-in server's test. Adding a
checkpoint of an existing family is its model.toml plus one line in the family's builder."""

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
    contract_checkpoints,
    missing_pieces,
)


def test_every_registry_entry_runs_in_the_contract_or_has_its_served_test() -> None:
    registry = load_registry()
    assert missing_pieces(registry) == []
    # what the check reads is really there: the contract's parameters are exactly the built models
    assert [model for model, _, _ in contract_checkpoints()] == sorted(
        name for name, spec in registry.items() if not spec.server
    )
    assert all(builder_of(model) == (builder, folder) for model, builder, folder in contract_checkpoints())


def _checkout(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of envs/ and tests/tiny/ to add a model to."""
    envs, tiny = tmp_path / "envs", tmp_path / "tiny"
    shutil.copytree(ENVS_DIR, envs)
    shutil.copytree(TINY_DIR, tiny, ignore=shutil.ignore_patterns("__pycache__"))
    return envs, tiny


def _add_model(envs: Path, name: str, like: str, *replacements: tuple[str, str]) -> None:
    """envs/<name>/model.toml: a copy of envs/<like>/model.toml with `replacements` made in it."""
    text = (envs / like / "model.toml").read_text()
    for old, new in replacements:
        text = text.replace(old, new)
    (envs / name).mkdir()
    (envs / name / "model.toml").write_text(text)


def test_a_new_checkpoint_of_a_family_is_its_model_toml_and_one_builder_line(tmp_path: Path) -> None:
    """The experiment of issue 12: wd14-convnext, one more WD v3 tagger on runners/adapters/wd14.py."""
    envs, tiny = _checkout(tmp_path)
    _add_model(
        envs,
        "wd14-convnext",
        "wd14",
        ("SmilingWolf/wd-vit-tagger-v3", "SmilingWolf/wd-convnext-tagger-v3"),
        ("7f6b584d0bd3f55c4531f14ba3d4761b2bccdc0f", "0" * 40),
    )
    registry = load_registry(envs)
    assert registry["wd14-convnext"].adapter == "runners.adapters.wd14"

    # the model.toml alone: the registry test names the missing piece
    assert missing_pieces(registry, tiny, ADAPTERS_DIR) == [
        "wd14-convnext: no tiny builder; add a line for it to COVERS in its family's tests/tiny/*.py",
    ]
    assert "wd14-convnext" not in [model for model, _, _ in contract_checkpoints(tiny)]

    # one line in the family's builder: its tiny build stands in for the new checkpoint, and the
    # contract test's parameters hold it (nothing else to write)
    builder = tiny / "wd14.py"
    text = builder.read_text()
    assert '    "wd14-eva02": "",\n' in text
    builder.write_text(text.replace('    "wd14-eva02": "",\n', '    "wd14-eva02": "",\n    "wd14-convnext": "",\n'))
    assert builder_of("wd14-convnext", tiny) == ("wd14", "")
    assert ("wd14-convnext", "wd14", "") in contract_checkpoints(tiny)
    assert missing_pieces(registry, tiny, ADAPTERS_DIR) == []


def test_a_new_family_needs_a_builder(tmp_path: Path) -> None:
    envs, tiny = _checkout(tmp_path)
    _add_model(envs, "newfam", "wd14", ('adapter = "runners.adapters.wd14"', 'adapter = "runners.adapters.newfam"'))
    assert missing_pieces(load_registry(envs), tiny, ADAPTERS_DIR) == [
        "newfam: no tiny builder; add a line for it to COVERS in its family's tests/tiny/*.py",
    ]
    (tiny / "newfam.py").write_text('ENV = "onnx"\nCOVERS = {"newfam": ""}\n')
    assert missing_pieces(load_registry(envs), tiny, ADAPTERS_DIR) == [
        "tests/tiny/newfam.py: no BAD_OPTION (an infer option its adapter answers with an error cell, or None)",
    ]


def test_a_served_model_needs_its_adapter_test_and_no_builder(tmp_path: Path) -> None:
    envs, tiny = _checkout(tmp_path)
    _add_model(
        envs, "served", "llava", ('adapter = "runners.adapters.ollama"', 'adapter = "runners.adapters.newserver"')
    )
    registry = load_registry(envs)
    assert registry["served"].server
    assert missing_pieces(registry, tiny, ADAPTERS_DIR) == [
        "served: served, so no contract test; write tests/adapters/test_newserver.py"
    ]
    (tiny / "blip.py").write_text((tiny / "blip.py").read_text().replace('"blip": "",', '"blip": "", "served": "",'))
    assert missing_pieces(registry, tiny, ADAPTERS_DIR) == [
        "served: a served model (server = 'ollama') with a tiny builder; drop it",
        "served: served, so no contract test; write tests/adapters/test_newserver.py",
    ]


def test_covers_that_name_no_model_or_one_model_twice_are_reported(tmp_path: Path) -> None:
    envs, tiny = _checkout(tmp_path)
    registry = load_registry(envs)
    (tiny / "wd14_wide.py").write_text(
        (tiny / "wd14_wide.py")
        .read_text()
        .replace("COVERS: dict[str, str] = {}", 'COVERS = {"wd14": "", "wd14-gone": ""}\nBAD_OPTION = None')
    )
    (tiny / "blip.py").write_text((tiny / "blip.py").read_text().replace("COVERS = ", "BUILDS = "))
    (tiny / "florence2.py").write_text((tiny / "florence2.py").read_text().replace('ENV = "modern"', ""))
    assert missing_pieces(registry, tiny, ADAPTERS_DIR) == [
        "tests/tiny/blip.py: no COVERS (the registry entries it builds for, or {})",
        'tests/tiny/florence2.py: no ENV (the env it builds in: ENV = "<env>")',
        "tests/tiny/wd14_wide.py: COVERS names 'wd14-gone', with no envs/wd14-gone/model.toml",
        "blip: no tiny builder; add a line for it to COVERS in its family's tests/tiny/*.py",
        "wd14: covered by several tiny builders (wd14, wd14_wide); keep one",
    ]


def test_one_model_per_checkpoint_folder() -> None:
    assert checkpoints("qwen_vl") == {"qwen2_5_vl": "qwen25vl", "qwen2_vl": "qwen2vl-2b"}
    assert checkpoints("blip2") == {"opt": "blip2", "flan-t5": "blip2-flan"}
