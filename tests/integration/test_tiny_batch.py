"""`python -m tests.tiny` (tests/tiny/__main__.py), the process a test session makes the tiny builds of one
env in: each build in a child of its own, one report line per build, a failing build never stopping the
others. (Every real build goes through it in `make test`; this checks the reporting that
tests/tiny_models.py reads, with builds that fail, in the orchestrator's venv: no torch needed.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from orchestrator.paths import PROJECT_ROOT
from tests.tiny import BATCH_PREFIX


def _batch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.tiny", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )


def test_each_build_is_reported_and_a_failure_stops_none_of_the_others(tmp_path: Path) -> None:
    # no such builder (ImportError) and a helper module with no build() (AttributeError)
    proc = _batch(f"no_such_builder={tmp_path / 'a'}", f"_common={tmp_path / 'b'}")
    assert proc.returncode == 1
    reports = sorted(line for line in proc.stdout.splitlines() if line.startswith(BATCH_PREFIX))
    assert reports == [f"{BATCH_PREFIX}failed _common", f"{BATCH_PREFIX}failed no_such_builder"]
    # each failure's traceback on stderr, under the name of its build
    assert f"{BATCH_PREFIX}no_such_builder:" in proc.stderr and "ModuleNotFoundError" in proc.stderr
    assert f"{BATCH_PREFIX}_common:" in proc.stderr and "AttributeError" in proc.stderr


def test_usage() -> None:
    proc = _batch("no-equals-sign")
    assert proc.returncode == 2 and "usage: python -m tests.tiny FAMILY=OUT_DIR" in proc.stderr
