"""The REAL runner host (runners/host.py) with a trivial test adapter, in the orchestrator's venv.

Covers: stray stdout from the adapter never reaches the protocol stream, bad images of every
kind are that image's `bad_image` (or are decoded correctly), adapter exceptions are that
image's `error`, the next request is read while one computes, and the runner dies with its parent.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from PIL import Image

from orchestrator.images import hash_file
from orchestrator.paths import PROJECT_ROOT
from orchestrator.run.processes import RunnerProcess
from tests.integration.helpers import fake_job, run


def _save(path: Path, img: Image.Image, **kw: Any) -> Path:
    img.save(path, **kw)
    return path


@pytest.fixture()
def image_zoo(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "zoo"
    d.mkdir()
    good = Image.radial_gradient("L").convert("RGB").resize((120, 80))
    jpeg = io.BytesIO()
    good.save(jpeg, "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: stored 120x80 landscape, shown 80x120 portrait
    paletted = Image.new("P", (50, 40), 0)
    paletted.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    paletted.paste(1, (0, 0, 25, 40))
    frames = [Image.new("RGB", (30, 30), c) for c in ("red", "green", "blue")]
    zoo = {
        "good.png": _save(d / "good.png", good),
        "zero.jpg": d / "zero.jpg",
        "truncated.jpg": d / "truncated.jpg",
        "text.png": d / "text.png",
        "cmyk.jpg": _save(d / "cmyk.jpg", good.convert("CMYK"), format="JPEG"),
        "gray16.png": _save(d / "gray16.png", Image.linear_gradient("L").convert("I;16").resize((64, 64))),
        "palette_alpha.png": _save(d / "palette_alpha.png", paletted, transparency=0),
        "animated.gif": d / "animated.gif",
        "rotated.jpg": _save(d / "rotated.jpg", good, format="JPEG", exif=exif.tobytes()),
    }
    zoo["zero.jpg"].write_bytes(b"")
    zoo["truncated.jpg"].write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    zoo["text.png"].write_text("this is not an image\n")
    frames[0].save(zoo["animated.gif"], save_all=True, append_images=frames[1:], duration=100)
    return zoo


def _host_job(tmp_path: Path, **infer_options: object):
    return fake_job(tmp_path, "tests.fakes.adapter", runner_module="runners.host", infer_options=infer_options)


def test_bad_images_are_cells_not_deaths(tmp_path: Path, image_zoo: dict[str, Path]) -> None:
    info, cells = run(_host_job(tmp_path), [hash_file(p) for p in image_zoo.values()])
    status = {name: cells[name]["status"] for name in image_zoo}
    assert status == {
        "good.png": "ok",
        "zero.jpg": "bad_image",
        "truncated.jpg": "bad_image",
        "text.png": "bad_image",
        "cmyk.jpg": "ok",
        "gray16.png": "ok",
        "palette_alpha.png": "ok",
        "animated.gif": "ok",
        "rotated.jpg": "ok",
    }
    assert "empty file" in cells["zero.jpg"]["message"]
    assert "cannot decode" in cells["text.png"]["message"]
    assert cells["cmyk.jpg"]["image"]["mode"] == "CMYK" and cells["cmyk.jpg"]["tags"][0]["name"] == "mode RGB"
    assert cells["palette_alpha.png"]["tags"][0]["name"] == "mode RGBA"
    assert cells["gray16.png"]["image"]["mode"].startswith("I;16")
    assert cells["gray16.png"]["tags"][0]["name"] == "mode RGB"
    assert cells["animated.gif"]["image"]["frames"] == 3
    assert cells["rotated.jpg"]["raw"]["size"] == [80, 120], "EXIF orientation must be applied"
    assert cells["rotated.jpg"]["image"]["exif_orientation"] == 6
    assert info.status == "ok" and info.crashes == 0
    log = Path(info.log_path).read_text()
    assert "a library printing to stdout at import time" in log and "binary noise on fd 1" in log


def test_sixteen_bit_is_scaled_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "mid16.png"
    Image.new("I;16", (8, 8), 32768).save(path)  # half of the 16-bit range
    _, cells = run(fake_job(tmp_path, "tests.fakes.adapter", runner_module="runners.host"), [hash_file(path)])
    assert cells["mid16.png"]["status"] == "ok"
    assert cells["mid16.png"]["raw"]["rgb_extrema"][0] == [128, 128], "16-bit 32768 must become 8-bit 128"


def test_decompression_bomb_refused(tmp_path: Path) -> None:
    path = _save(tmp_path / "big.png", Image.new("L", (400, 400)))
    _, cells = run(_host_job(tmp_path, max_pixels=50_000), [hash_file(path)])
    assert cells["big.png"]["status"] == "bad_image" and "decompression bomb" in cells["big.png"]["message"]


def test_adapter_exception_is_that_images_error(tmp_path: Path, image_zoo: dict[str, Path]) -> None:
    imgs = [hash_file(image_zoo[n]) for n in ("good.png", "cmyk.jpg")]
    info, cells = run(_host_job(tmp_path, raise_on="cmyk.jpg"), imgs)
    assert cells["good.png"]["status"] == "ok"
    assert cells["cmyk.jpg"]["status"] == "error" and "adapter failure" in cells["cmyk.jpg"]["message"]
    assert "Traceback" in cells["cmyk.jpg"]["error"]["traceback"]
    assert info.crashes == 0


def test_load_exception_fails_the_model_with_traceback(tmp_path: Path, image_zoo: dict[str, Path]) -> None:
    job = fake_job(tmp_path, "tests.fakes.adapter", runner_module="runners.host", load_options={"fail_load": True})
    info, cells = run(job, [hash_file(image_zoo["good.png"])])
    assert cells["good.png"]["status"] == "error" and "asked to fail while loading" in cells["good.png"]["message"]
    assert info.status == "failed"
    # the whole traceback is in the runner log, which the one-line messages name
    log = job.log_path.read_text()
    assert "Traceback" in log and "RuntimeError: asked to fail while loading" in log


def test_runner_dies_with_its_parent(tmp_path: Path) -> None:
    driver = f"""
import sys, time
from pathlib import Path
from orchestrator.run.processes import RunnerProcess
r = RunnerProcess.start(Path(sys.executable), "tests.fakes.adapter", Path({str(tmp_path)!r}) / "r.log",
                        extra_env={{"PYTHONPATH": {str(PROJECT_ROOT)!r}}})
r.call("hello", 30)
print(r.pid, flush=True)
time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)
    runner_pid = int(proc.stdout.readline())  # type: ignore[union-attr]
    assert psutil.pid_exists(runner_pid)
    os.kill(proc.pid, signal.SIGKILL)  # the orchestrator dies without any chance to clean up
    proc.wait()
    for _ in range(50):
        if not psutil.pid_exists(runner_pid) or psutil.Process(runner_pid).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the runner outlived its parent")


def test_the_next_photo_is_read_while_one_computes(tmp_path: Path) -> None:
    """Requests are read as they come: a photo sent while the model computes waits in the runner,
    not in the pipe (which holds far less than a camera photo), and replies keep their order."""
    small = _save(tmp_path / "small.png", Image.new("RGB", (8, 8)))
    big = _save(tmp_path / "big.png", Image.effect_noise((1400, 1400), 64).convert("RGB"))  # ~6 MB of noise
    runner = RunnerProcess.start(
        Path(sys.executable), "tests.fakes.adapter", tmp_path / "r.log", extra_env={"PYTHONPATH": str(PROJECT_ROOT)}
    )
    try:
        runner.call("hello", 30)
        runner.call("load", 30, spec={"options": {}}, infer_options={})
        first = runner.request(
            "infer", images=[{"id": "a", "name": "small.png", "data": small.read_bytes()}], options={"sleep_s": 1.0}
        )
        second = runner.request("infer", images=[{"id": "b", "name": "big.png", "data": big.read_bytes()}], options={})
        assert runner.unsent_bytes > 0, "the photo is larger than what the pipe takes at once"
        with pytest.raises(ValueError, match="oldest"):
            runner.reply(second, 30)  # replies come in request order
        assert runner.reply(first, 30)["results"][0]["status"] == "ok"
        assert runner.unsent_bytes == 0, "the runner read the next photo while the first one computed"
        assert runner.reply(second, 30)["results"][0]["raw"]["size"] == [1400, 1400]
    finally:
        runner.stop()
    assert not runner.alive()


@pytest.mark.parametrize(("side", "decoded"), [(64, [100, 75]), (200, [200, 150])])
def test_photos_sent_during_the_load_are_decoded_meanwhile(tmp_path: Path, side: int, decoded: list[int]) -> None:
    """The photos sent while the model loads are decoded during the load at the size the adapter
    expects (longest side 64: 1/8 of 800 x 600); when the loaded model needs another size (200:
    1/4), each is decoded again, so the cells are those of a decode after the load."""
    paths = [
        _save(tmp_path / f"p{i}.jpg", Image.effect_noise((800, 600), 40 + i).convert("RGB"), format="JPEG")
        for i in range(4)
    ]
    job = fake_job(
        tmp_path, "tests.fakes.adapter", runner_module="runners.host", load_options={"side": side, "await_ahead_s": 20}
    )
    info, cells = run(job, [hash_file(p) for p in paths])
    during = [n for n in info.load["notes"] if n.startswith("photos being decoded during the load")]
    assert during and not during[0].endswith(": 0"), info.load["notes"]
    assert [cells[p.name]["raw"]["size"] for p in paths] == [decoded] * 4
    assert all(cells[p.name]["image"]["decoded_width"] == decoded[0] for p in paths)
