"""`make test`'s work units (tests/scheduling.py): the contract per checkpoint, the long ones first."""

from __future__ import annotations

import ast

from orchestrator.paths import PROJECT_ROOT
from tests.registry_coverage import contract_checkpoints
from tests.scheduling import CONTRACT, LONG_FIRST, PER_TEST, order, unit_of


def test_the_contract_is_a_unit_per_checkpoint_and_other_files_one_each() -> None:
    assert unit_of(f"{CONTRACT}test_cells[ram-plus]") == unit_of(f"{CONTRACT}test_rgba[ram-plus]")
    assert unit_of(f"{CONTRACT}test_cells[ram-plus]") != unit_of(f"{CONTRACT}test_cells[blip]")
    assert unit_of("tests/unit/test_store.py::test_a") == unit_of("tests/unit/test_store.py::test_b[x]")
    first = PER_TEST[0]
    assert unit_of(f"{first}test_a") != unit_of(f"{first}test_b")
    assert unit_of(f"{first}test_a[x]") == unit_of(f"{first}test_a[y]")  # a parametrised test stays whole


def test_long_units_first_then_runner_files_then_the_rest() -> None:
    ids = [
        "tests/unit/test_store.py::a",
        "tests/unit/test_store.py::b",
        "tests/unit/test_store.py::c",
        "tests/adapters/test_blip.py::a",
        f"{CONTRACT}test_cells[ram-plus]",
        "tests/integration/test_cli.py::test_analyze_every_captioner_and_the_judge",
        "tests/integration/test_export.py::a",
        "tests/integration/test_export.py::b",
    ]
    units: dict[str, dict[str, bool]] = {}
    for nodeid in ids:
        units.setdefault(unit_of(nodeid), {})[nodeid] = False
    assert order(units) == [
        "tests/integration/test_cli.py::test_analyze_every_captioner_and_the_judge",
        "tests/adapters/test_contract.py[ram-plus]",
        "tests/integration/test_export.py",
        "tests/adapters/test_blip.py",
        "tests/unit/test_store.py",
    ]


def test_every_long_first_unit_still_exists() -> None:
    """A renamed test or model would silently lose its place at the front."""
    checkpoints = {name for name, _builder, _folder in contract_checkpoints()}
    for unit in LONG_FIRST:
        if unit.startswith(CONTRACT.removesuffix("::")):
            assert unit.rsplit("[", 1)[1].rstrip("]") in checkpoints, unit
            continue
        path, test = unit.split("::")
        tree = ast.parse((PROJECT_ROOT / path).read_text())
        assert test in {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}, unit


def test_files_split_per_test_share_no_module_fixture() -> None:
    """A module-scoped fixture in a PER_TEST file would be set up again on every worker."""
    for prefix in PER_TEST:
        source = (PROJECT_ROOT / prefix.removesuffix("::")).read_text()
        assert 'scope="module"' not in source and "scope='module'" not in source, prefix
