"""`mltag health`, and stopping a run: Ctrl-C and SIGTERM leave no runner behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from orchestrator.paths import PROJECT_ROOT
from tests.integration.helpers import slow_photos, wait_until_inferring
from tests.support import mltag

pytestmark = pytest.mark.adapter


def test_health_deep_with_local_weights(tiny_model, tmp_path: Path) -> None:
    proc = mltag(
        "health", "wd14", "--deep", f"--weights=wd14={tiny_model('wd14')}", env={"HF_HOME": str(tmp_path / "hf")}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "wd14 healthy" in out and "onnxruntime 1.31.1" in out and "onnxruntime:CPUExecutionProvider" in out
    assert "deep: inference ok" in out


def test_health_names_missing_weights_and_env_with_fixes(tmp_path: Path) -> None:
    proc = mltag("health", "wd14", env={"HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 1
    assert "FAIL weights" in proc.stdout and "not in the Hugging Face cache" in proc.stdout
    assert "fix: mltag run wd14" in proc.stdout
    proc = mltag(
        "health", "wd14", env={"MLTAG_CACHE_DIR": str(tmp_path / "empty-cache"), "HF_HOME": str(tmp_path / "hf")}
    )
    assert proc.returncode == 1
    assert "FAIL env: env 'onnx' is missing: not built" in proc.stdout
    assert "fix: make setup-envs MODELS=wd14" in proc.stdout


@pytest.fixture()
def slow_folder(tmp_path: Path) -> Path:
    """40 distinct 12 MP photo-sized JPEGs: decoding alone keeps a run busy for seconds."""
    return slow_photos(tmp_path / "photos")


def _runner_pids(cli: psutil.Process) -> list[int]:
    for _ in range(300):
        kids = [p.pid for p in cli.children(recursive=True)]
        if kids:
            return kids
        time.sleep(0.05)
    raise AssertionError("the CLI never started a runner")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_stops_every_runner(tiny_model, slow_folder: Path, sig: int, code: int) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "run",
            "wd14",
            str(slow_folder),
            f"--weights=wd14={tiny_model('wd14')}",
            "--offline",
            "--format",
            "json",
        ],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    runners = _runner_pids(psutil.Process(proc.pid))
    wait_until_inferring(proc, "wd14")
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == code, stderr
    time.sleep(0.3)
    left = [p for p in runners if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"runner(s) {left} outlived the CLI"
    shutil.rmtree(slow_folder)


@pytest.mark.parametrize("retry", [False, True])
def test_runner_killed_from_outside_mid_run(tiny_model, slow_folder: Path, retry: bool) -> None:
    """The spine's done criterion, with the real CLI, runner host and wd14 adapter."""
    import json

    import jsonschema

    args = [
        sys.executable,
        "-m",
        "orchestrator",
        "run",
        "wd14",
        str(slow_folder),
        "--offline",
        "--format",
        "json",
        f"--weights=wd14={tiny_model('wd14')}",
    ] + ([] if retry else ["--no-retry-crashed"])
    proc = subprocess.Popen(args, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runner = _runner_pids(psutil.Process(proc.pid))[0]
    wait_until_inferring(proc, "wd14")
    os.kill(runner, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    doc = json.loads(stdout)
    jsonschema.validate(doc, json.loads((PROJECT_ROOT / "schemas" / "result.schema.json").read_text()))
    cells = [img["results"]["wd14"] for img in doc["images"]]
    assert len(cells) == 40
    if retry:
        assert proc.returncode == 0, stderr
        assert all(c["status"] == "ok" for c in cells)
        retried = [c for c in cells if c.get("attempts")]
        assert len(retried) == 1 and "killed by SIGKILL" in retried[0]["attempts"][0]["message"]
    else:
        assert proc.returncode == 1, stderr
        crashed = [c for c in cells if c["status"] == "crashed"]
        assert len(crashed) == 1 and "killed by SIGKILL" in crashed[0]["message"]
        assert sum(c["status"] == "ok" for c in cells) == 39
    assert doc["models"][0]["crashes"] == 1 and len(doc["models"][0]["reload_s"]) == 1
