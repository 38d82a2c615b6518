"""One error tree (orchestrator/errors.py) and one handler: every error mltag reports is an MltagError,
printed as one line (and its fix) with exit code 2 (usage) or 1 (work failed), never a traceback."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import errors
from orchestrator.errors import MltagError
from orchestrator.paths import PROJECT_ROOT


def test_every_orchestrator_exception_is_defined_in_the_one_tree() -> None:
    """No module outside errors.py defines an exception class: they all live under MltagError."""
    strays = []
    for path in (PROJECT_ROOT / "orchestrator").rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and (b.id.endswith(("Error", "Exception")) or b.id == "Exception")
                for b in node.bases
            ):
                strays.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.name}")
    assert strays == [], strays
    classes = [v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, BaseException)]
    assert len(classes) >= 15 and all(issubclass(c, MltagError) for c in classes)


def test_the_fix_and_exit_code_travel_with_the_error() -> None:
    exc = errors.EnvBuildError("building env 'x' failed", fix="make setup-envs")
    assert (exc.message, exc.fix, exc.exit_code, str(exc)) == (
        "building env 'x' failed",
        "make setup-envs",
        1,
        "building env 'x' failed",
    )
    assert errors.UsageError("bad flag").exit_code == 2 and errors.StoreWriteError("full").exit_code == 1
    assert errors.StoreError("locked", exit_code=1).exit_code == 1 and errors.StoreError("x").exit_code == 2


def _mltag(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin", "MLTAG_HOME": str(home)},
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["lock", "no-such-env"], 2, "no env 'no-such-env'"),  # EnvBuildError (was a traceback)
        (["report"], 2, "no results store at"),  # StoreError
        (["analyze", "no/such/folder", "--models", "wd14"], 2, "no/such/folder"),  # ImageDiscoveryError
        (["analyze", ".", "--models", "no-such-model"], 2, "no-such-model"),  # UnknownModel
        (["analyze", ".", "--device", "tpu"], 2, "unknown --device 'tpu'"),  # UsageError
        # out-of-range values, refused before any model runs (were accepted silently: 0 tags, status ok)
        (["analyze", ".", "--threshold", "2"], 2, "--threshold must be within 0 and 1"),
        (
            ["analyze", ".", "--threshold", "-1"],
            2,
            "--threshold must be within 0 and 1 (scores are probabilities), got -1",
        ),
        (["analyze", ".", "--threshold", "nan"], 2, "--threshold must be within 0 and 1"),
        (["run", "wd14", ".", "--threshold", "1.5"], 2, "--threshold must be within 0 and 1"),
        (["report", "--threshold", "2"], 2, "--threshold must be within 0 and 1"),
        (
            ["export", ".", "--model", "wd14", "--out", "x", "--threshold", "-0.1"],
            2,
            "--threshold must be within 0 and 1",
        ),
        (["analyze", ".", "--timeout", "0"], 2, "--timeout must be more than 0 seconds, got 0"),
        (["run", "wd14", ".", "--timeout", "-5"], 2, "--timeout must be more than 0 seconds"),
        (["judge", ".", "--judge", "qwen25-judge", "--timeout", "0"], 2, "--timeout must be more than 0 seconds"),
    ],
)
def test_the_cli_prints_one_line_and_its_fix_never_a_traceback(
    tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    out = _mltag(*args, home=tmp_path)
    assert out.returncode == code, out.stderr
    assert out.stderr.startswith("error: ") and says in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("  fix: ")), lines
