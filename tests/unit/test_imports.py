"""The import rule: the CLI never loads model libraries; the layers never cross."""

from __future__ import annotations

import subprocess
import sys

import pytest

from orchestrator.paths import PROJECT_ROOT


def test_cli_import_loads_no_model_library() -> None:
    code = (
        "import sys, orchestrator.cli, orchestrator.run.pipeline, orchestrator.run.supervisor, "
        "orchestrator.run.health\n"
        "bad = [m for m in ('torch', 'transformers', 'onnxruntime', 'open_clip', 'numpy', 'runners') "
        "if m in sys.modules]\nprint(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_import_linter_contracts_hold() -> None:
    lint = PROJECT_ROOT / ".venv" / "bin" / "lint-imports"
    exe = str(lint) if lint.exists() else "lint-imports"
    out = subprocess.run(
        [exe, "--config", str(PROJECT_ROOT / "pyproject.toml")], capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "BROKEN" not in out.stdout and "KEPT" in out.stdout


def test_adapters_never_import_each_other() -> None:
    """An adapter loads only its own deps: runners/adapters/<x>.py may import the runner infrastructure
    (runners/*.py) and schemas, never another adapter; the infrastructure never imports an adapter."""
    import ast

    for path in (PROJECT_ROOT / "runners").rglob("*.py"):
        is_adapter = path.parent.name == "adapters"
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                if name.startswith("runners.adapters."):
                    who = f"adapter {path.name}" if is_adapter else f"runners/{path.name} (infrastructure)"
                    raise AssertionError(f"{who} imports the adapter {name}")


@pytest.mark.parametrize("package", ["orchestrator", "runners", "schemas"])
def test_no_import_circle(package: str) -> None:
    """Every import (module level or inside a function) between a package's modules, as a graph: it
    has no cycle (the result document has one shape, orchestrator/document.py, read from the store by
    orchestrator/store/documents.py; a VLM's tag list is parsed in runners/_text.py, which both the
    captioners' base and the judge's merge import)."""
    import ast

    graph: dict[str, set[str]] = {}
    for path in (PROJECT_ROOT / package).rglob("*.py"):
        parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package):
                targets.add(node.module)
                targets.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith(package))
        graph[module] = targets
    edges = {m: {t for t in ts if t in graph and t != m and not m.startswith(t + ".")} for m, ts in graph.items()}

    def visit(node: str, trail: list[str]) -> None:
        if node in trail:
            raise AssertionError("import circle: " + " -> ".join(trail[trail.index(node) :] + [node]))
        for nxt in sorted(edges[node]):
            visit(nxt, trail + [node])

    for module in sorted(edges):
        visit(module, [])
