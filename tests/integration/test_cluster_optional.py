"""Ray is optional: without --cluster nothing imports it, and --cluster without it says how to install it.

These run whether or not the ray extra is installed: Ray is hidden from the CLI process by an import
hook that records every attempt to import it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.paths import PROJECT_ROOT
from tests.support import SAMPLES

# Runs `mltag ARGS` in this process with `ray` unimportable; prints the exit code and every ray
# import that was attempted as the last line of stderr.
NO_RAY = """
import json, sys
attempts = []
class NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            attempts.append(name)
            raise ImportError(f"No module named {name!r} (hidden by the test)")
        return None
sys.meta_path.insert(0, NoRay())
from orchestrator.cli import app
try:
    code = app(sys.argv[1:], standalone_mode=False) or 0   # click returns typer.Exit's code here
except SystemExit as exc:
    code = exc.code
except Exception as exc:
    code = getattr(exc, "exit_code", 1)
loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
print(json.dumps({"code": code, "attempts": attempts, "loaded": loaded}), file=sys.stderr)
"""


def _mltag_without_ray(*args: str) -> tuple[dict, str]:
    proc = subprocess.run(
        [sys.executable, "-c", NO_RAY, *args], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=600
    )
    *lines, last = proc.stderr.strip().splitlines()
    return json.loads(last), "\n".join(lines)


@pytest.mark.adapter
def test_single_machine_run_never_imports_ray(tiny_model, tmp_path: Path) -> None:
    result, stderr = _mltag_without_ray(
        "analyze",
        str(SAMPLES / "brick.png"),
        "--models",
        "wd14",
        "--offline",
        f"--weights=wd14={tiny_model('wd14')}",
        "--format",
        "json",
        "--out",
        str(tmp_path / "out.json"),
        "--no-store",
    )
    assert result["code"] == 0, stderr
    assert result["attempts"] == [] and result["loaded"] == []
    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["images"][0]["results"]["wd14"]["status"] == "ok"


def test_cluster_without_ray_names_the_install_command() -> None:
    result, stderr = _mltag_without_ray("analyze", str(SAMPLES), "--models", "wd14", "--cluster", "auto")
    assert result["code"] == 2
    assert "--cluster needs Ray, which is not installed" in stderr
    assert "pip install 'mltag[ray]'" in stderr and "make setup EXTRAS=ray" in stderr
    assert result["attempts"][0] == "ray"


def test_cluster_env_var_is_read() -> None:
    """MLTAG_CLUSTER=auto is --cluster auto (here: without Ray, the same install message)."""
    proc = subprocess.run(
        [sys.executable, "-c", NO_RAY, "health", "wd14"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
        env={**os.environ, "MLTAG_CLUSTER": "auto"},
    )
    assert "pip install 'mltag[ray]'" in proc.stderr
    assert json.loads(proc.stderr.strip().splitlines()[-1])["code"] == 2
