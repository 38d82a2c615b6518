"""What each registry entry needs in the tests, read from the files (nothing imported or built).

A model in envs/<model>/model.toml needs:
- a tiny builder: one `tests/tiny/<builder>.py` whose `COVERS` names it (with the folder of the
  build its `--weights` points at), and which declares `ENV` (the env it builds in) and `BAD_OPTION`
  (an infer option the adapter must answer with an error cell, or None where it has none); it may
  declare `CONTRACT_OPTIONS` (infer options for the contract, where the default is slow). That is
  all tests/adapters/test_contract.py needs: it runs over `contract_checkpoints()`, so the contract
  (schema, order, batch, odd inputs, bad option, score range) runs for the model with no other edit.
- a served model (model.toml `server`) has no builder (a running server holds it; tests/ollama_server.py
  and tests/openai_server.py stand in for it): its adapter test, `tests/adapters/test_<adapter module>.py`.

`missing_pieces` lists what is absent; tests/unit/test_registry_coverage.py asserts the list is
empty, the way timm's tests run over `list_models()`. A new checkpoint of an existing family is
its model.toml plus one line in its builder's COVERS.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from orchestrator.models.registry import ModelSpec
from orchestrator.paths import PROJECT_ROOT

TINY_DIR = PROJECT_ROOT / "tests" / "tiny"
ADAPTERS_DIR = PROJECT_ROOT / "tests" / "adapters"


# What every builder declares (read by module_constant), and what each is, for the message when absent.
BUILDER_CONSTANTS = {
    "ENV": 'the env it builds in: ENV = "<env>"',
    "COVERS": "the registry entries it builds for, or {}",
    "BAD_OPTION": "an infer option its adapter answers with an error cell, or None",
}


def module_constant(path: Path, name: str) -> Any:
    """A module-level `NAME = <literal>` of a Python file, read without importing it (the builders
    import torch and run only inside model envs). Raises KeyError when the file has none."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return ast.literal_eval(value)
    raise KeyError(f"{path.name} has no module-level {name} = <literal>")


def builders(tiny_dir: Path = TINY_DIR) -> list[Path]:
    """The builder modules: tests/tiny/*.py but the package's shared helpers (_*.py, __init__.py)."""
    return [p for p in sorted(tiny_dir.glob("*.py")) if not p.name.startswith("_")]


def tiny_covers(tiny_dir: Path = TINY_DIR) -> dict[str, dict[str, str]]:
    """builder name -> {registry model: folder of the build its --weights names ("" = the build)}.
    A builder without COVERS maps to {} (missing_pieces reports it)."""
    out: dict[str, dict[str, str]] = {}
    for path in builders(tiny_dir):
        try:
            out[path.stem] = dict(module_constant(path, "COVERS"))
        except KeyError:
            out[path.stem] = {}
    return out


def builder_of(model: str, tiny_dir: Path = TINY_DIR) -> tuple[str, str] | None:
    """(builder name, folder in its build) of a registry model, or None when no builder covers it."""
    for builder, covered in tiny_covers(tiny_dir).items():
        if model in covered:
            return builder, covered[model]
    return None


def checkpoints(builder: str, tiny_dir: Path = TINY_DIR) -> dict[str, str]:
    """One registry model per checkpoint folder of a build ({folder: model}, first in COVERS order):
    what a test runs to cover every architecture a builder makes once."""
    out: dict[str, str] = {}
    for model, folder in tiny_covers(tiny_dir)[builder].items():
        out.setdefault(folder, model)
    return out


def contract_checkpoints(tiny_dir: Path = TINY_DIR) -> list[tuple[str, str, str]]:
    """(registry model, builder, folder of the build) for every model a tiny builder covers: the
    parameters of tests/adapters/test_contract.py, in registry-name order."""
    return sorted(
        (model, builder, folder)
        for builder, covered in tiny_covers(tiny_dir).items()
        for model, folder in covered.items()
    )


def missing_pieces(
    registry: dict[str, ModelSpec], tiny_dir: Path = TINY_DIR, adapters_dir: Path = ADAPTERS_DIR
) -> list[str]:
    """One line per missing piece, naming the entry and what to add; [] when every entry is covered."""
    problems: list[str] = []
    covers = tiny_covers(tiny_dir)
    for path in builders(tiny_dir):
        for name in BUILDER_CONSTANTS:
            if name == "BAD_OPTION" and not covers[path.stem]:
                continue  # a build no registry entry runs on (bench/'s wide WD14): no contract test
            try:
                module_constant(path, name)
            except KeyError:
                problems.append(f"tests/tiny/{path.name}: no {name} ({BUILDER_CONSTANTS[name]})")
    covered_by: dict[str, list[str]] = {}
    for model, builder, _ in contract_checkpoints(tiny_dir):
        covered_by.setdefault(model, []).append(builder)
        if model not in registry:
            problems.append(f"tests/tiny/{builder}.py: COVERS names {model!r}, with no envs/{model}/model.toml")
    for name, spec in registry.items():
        owners = covered_by.get(name, [])
        if len(owners) > 1:
            problems.append(f"{name}: covered by several tiny builders ({', '.join(owners)}); keep one")
        if spec.server:
            if owners:
                problems.append(f"{name}: a served model (server = {spec.server!r}) with a tiny builder; drop it")
            test = f"test_{spec.adapter.rsplit('.', 1)[1]}.py"  # no contract run: its stand-in server's test
            if not (adapters_dir / test).is_file():
                problems.append(f"{name}: served, so no contract test; write tests/adapters/{test}")
        elif not owners:
            problems.append(f"{name}: no tiny builder; add a line for it to COVERS in its family's tests/tiny/*.py")
    return problems
