"""Build supervisor jobs that run the fake runner (tests/fakes/runner.py) or the real host; measure `mltag`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from orchestrator.images import ImageRef, hash_file
from orchestrator.paths import PROJECT_ROOT
from orchestrator.run.jobs import Limits, ModelJob
from orchestrator.run.supervisor import Supervisor
from tests.support import spec


def peak_rss_mb(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 3600
) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Run `mltag ARGS` and sample its peak resident memory (VmHWM, Linux) until it exits:
    (peak MB of the orchestrator process itself, wall seconds, the finished process)."""
    import re
    import threading
    import time

    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=PROJECT_ROOT,
        text=True,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    peak = [0.0]

    def sample() -> None:
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                m = re.search(r"VmHWM:\s+(\d+) kB", status.read_text())
            except OSError:
                return
            if m:
                peak[0] = max(peak[0], int(m.group(1)) / 1024)
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate(timeout=timeout)
    wall = time.perf_counter() - start
    thread.join(timeout=1)
    return peak[0], wall, subprocess.CompletedProcess(args, proc.returncode, out, err)


def images(tmp_path: Path, names: list[str]) -> list[ImageRef]:
    out = []
    for i, name in enumerate(names):
        path = tmp_path / name
        path.write_bytes(b"fake image %d " % i + name.encode())
        out.append(hash_file(path))
    return out


def fake_job(
    tmp_path: Path,
    behaviour: str,
    limits: Limits | None = None,
    batch_size: int = 1,
    runner_module: str = "tests.fakes.runner",
    load_options: dict[str, Any] | None = None,
    infer_options: dict[str, Any] | None = None,
) -> ModelJob:
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir(exist_ok=True)
    load_spec = {
        "name": "fake",
        "hub_id": "fake/model",
        "revision": "0" * 40,
        "local_path": None,
        "offline": True,
        "device": "cpu",
        "dtype": "auto",
        "cache_dir": str(tmp_path / "cache"),
        "options": load_options or {},
    }
    return ModelJob(
        spec=spec(),
        python=Path(sys.executable),
        load_spec=load_spec,  # type: ignore[arg-type]
        infer_options=infer_options or {},
        log_path=tmp_path / "logs" / "fake.log",
        limits=limits or Limits(hello_s=30, load_s=30, infer_s=5),
        batch_size=batch_size,
        runner_module=runner_module,
        adapter=behaviour,
        offline=True,
        extra_env={"PYTHONPATH": str(PROJECT_ROOT), "FAKE_PID_DIR": str(pid_dir)},
    )


def run(job: ModelJob, imgs: list[ImageRef]) -> tuple[Any, dict[str, dict[str, Any]]]:
    cells: dict[str, dict[str, Any]] = {}
    info = Supervisor(job, lambda image, result: cells.__setitem__(image.path.name, result)).run(imgs)
    return info, cells


def started_pids(tmp_path: Path) -> list[int]:
    return [int(p.name) for p in (tmp_path / "pids").iterdir()]


def alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            continue
    return out


def slow_photos(folder: Path, count: int = 40) -> Path:
    """`count` distinct 12 MP photo-sized JPEGs in `folder`: decoding alone keeps a run busy for seconds."""
    import io

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    Image.merge("RGB", [Image.effect_noise((4000, 3000), 40 + 20 * i) for i in range(3)]).save(buf, "JPEG")
    for i in range(count):
        # bytes after the JPEG end marker are ignored by decoders but make each file distinct
        (folder / f"img{i:02d}.jpg").write_bytes(buf.getvalue() + b"%d" % i)
    return folder


def wait_until_inferring(proc: subprocess.Popen[str], model: str) -> None:
    """Read the CLI's stderr until it reports `model`'s first finished image (off a terminal it prints
    `  MODEL: DONE/TOTAL`): the runner is then loaded and busy with the next one. A fixed sleep instead
    raced the load under two test workers (a kill during the load leaves no cell retried)."""
    assert proc.stderr is not None, "start the CLI with stderr=subprocess.PIPE"
    lines: list[str] = []
    for line in proc.stderr:
        lines.append(line)
        if line.strip().startswith(f"{model}: "):
            return
    raise AssertionError(f"the run ended before {model} finished an image:\n{''.join(lines)}")
