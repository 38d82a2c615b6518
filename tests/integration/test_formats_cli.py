"""Issue 20, formats: a folder of camera RAW (DNG) + a RAW+JPEG pair + HEIC + a corrupt RAW through
the real CLI with tiny models, in the onnx env (wd14) and a torch env (clip, the modern env); and
every env decodes the same file to the same pixels (onnx, modern and tf4: both pinned Pillows).

The DNGs are written by tifffile (tests/formats.py), the HEIC by pillow-heif, the AVIF by Pillow,
the JPEG XL by pillow-jxl-plugin. Other RAW formats (CR2, CR3, NEF, ARW, ...) are read by the same
LibRaw call; no file of theirs can be made here (docs/guides/formats.md).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from runners._images import decode
from tests.formats import scene, write_dng, write_heic
from tests.support import SCHEMA, mltag
from tests.tiny_models import tiny_weights

pytestmark = pytest.mark.adapter

# What one env's decoder makes of each file: size, what the RAW decode used, and a hash of the pixels.
_DECODE = """
import hashlib, json, sys
from pathlib import Path
from runners._images import decode
from runners.base import longest_side_need
out = {}
for path in sys.argv[1:]:
    for raw in ("auto", "develop"):
        img = decode("x", path, Path(path).read_bytes(), need=lambda w, h: longest_side_need(w, h, 448), raw=raw)
        pil = img.image()
        out[f"{Path(path).name} {raw}"] = [pil.size, pil.mode, img.info.get("decoded_from"),
                                            hashlib.sha256(pil.tobytes()).hexdigest()]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("formats") / "photos"
    folder.mkdir()
    write_dng(folder / "IMG_0001.DNG", 960, 640, preview=(960, 640), orientation=6)  # + its JPEG: one photo
    scene(640, 960).save(folder / "IMG_0001.jpg", quality=92)
    write_dng(folder / "IMG_0002.dng", 640, 480)  # no preview: LibRaw's develop
    write_heic(folder / "IMG_0003.HEIC", scene(800, 600))
    (folder / "IMG_0004.nef").write_bytes(b"II*\x00" + b"\x00" * 4000)  # a RAW name, not a RAW
    return folder


def _pixels(folder: Path, tmp: Path) -> list[str]:
    extra = tmp / "extra"
    extra.mkdir(exist_ok=True)
    img = scene(320, 240)
    img.save(extra / "a.avif", "AVIF", quality=80)
    import pillow_jxl  # noqa: F401 - registers Pillow's JXL writer

    img.save(extra / "a.jxl", "JXL", quality=80)
    write_dng(extra / "small_preview.dng", 1200, 800, preview=(300, 200))  # auto: the develop, half size
    return [str(p) for p in sorted(folder.iterdir())] + [str(p) for p in sorted(extra.iterdir())]


def test_every_env_decodes_the_same_pixels(photos: Path, tmp_path: Path, env_script: Callable[..., Any]) -> None:
    files = _pixels(photos, tmp_path)
    readable = [f for f in files if not f.endswith(".nef")]
    # onnx (wd14) and modern (clip): Pillow 13.0; tf4 stands for the envs that pin Pillow 11.3 (legacy, ram)
    by_env = {env: env_script(env, _DECODE, *readable) for env in ("onnx", "modern", "tf4")}
    assert by_env["onnx"] == by_env["modern"] == by_env["tf4"]
    got = by_env["onnx"]
    assert got["IMG_0001.DNG auto"][2] == "raw-preview" and got["IMG_0001.DNG develop"][2] == "raw-develop"
    assert got["IMG_0002.dng auto"][2] == "raw-develop" and got["small_preview.dng auto"][2] == "raw-develop"
    assert got["IMG_0001.DNG auto"][0] == [320, 480]  # upright (the DNG says rotate 90), JPEG-drafted to 1/2
    assert {v[1] for v in got.values()} == {"RGB"}
    # the orchestrator's own venv (the same pins) agrees too: one decoder, whatever process runs it
    from runners.base import longest_side_need

    for key, (size, _, source, digest) in got.items():
        name, raw = key.rsplit(" ", 1)
        path = next(f for f in readable if Path(f).name == name)
        img = decode("x", path, Path(path).read_bytes(), need=lambda w, h: longest_side_need(w, h, 448), raw=raw)
        assert list(img.image().size) == size and img.info.get("decoded_from") == source, key
        assert hashlib.sha256(img.image().tobytes()).hexdigest() == digest, key


def _analyze(photos: Path, models: list[str], *flags: str) -> dict[str, Any]:
    weights = [f"--weights={m}={p}" for m, p in tiny_weights(models).items()]
    proc = mltag(
        "analyze",
        str(photos),
        "--models",
        ",".join(models),
        *weights,
        "--format",
        "json",
        "--offline",
        "--device",
        "cpu",
        "--no-store",
        *flags,
        timeout=900,
    )
    assert proc.returncode in (0, 1), proc.stderr[-4000:]  # 1: a bad_image cell (the corrupt RAW)
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, SCHEMA)
    return doc


def test_analyze_a_folder_of_raw_jpeg_heic(photos: Path) -> None:
    doc = _analyze(photos, ["wd14", "clip"])
    images = {Path(img["path"]).name: img for img in doc["images"]}
    assert sorted(images) == ["IMG_0001.jpg", "IMG_0002.dng", "IMG_0003.HEIC", "IMG_0004.nef"]
    assert images["IMG_0001.jpg"]["seen_as"] == [str(photos / "IMG_0001.DNG")]
    for model in ("wd14", "clip"):
        cells = {name: img["results"][model] for name, img in images.items()}
        assert cells["IMG_0001.jpg"]["status"] == "ok" and cells["IMG_0001.jpg"]["image"]["format"] == "JPEG"
        develop = cells["IMG_0002.dng"]
        assert develop["status"] == "ok", develop
        assert develop["image"]["decoded_from"] == "raw-develop" and develop["image"]["format"] == "RAW"
        heic = cells["IMG_0003.HEIC"]
        assert heic["status"] == "ok" and heic["image"]["format"] == "HEIF", heic
        assert (heic["image"]["width"], heic["image"]["height"]) == (800, 600)
        bad = cells["IMG_0004.nef"]
        assert bad["status"] == "bad_image" and "cannot decode NEF RAW" in bad["message"], bad


def test_raw_pairs_both_and_raw_develop(photos: Path) -> None:
    doc = _analyze(photos, ["wd14"], "--raw-pairs", "both")
    images = {Path(img["path"]).name: img for img in doc["images"]}
    assert "IMG_0001.DNG" in images and "seen_as" not in images["IMG_0001.jpg"]
    raw = images["IMG_0001.DNG"]["results"]["wd14"]
    assert raw["status"] == "ok" and raw["image"]["decoded_from"] == "raw-preview"  # 960 px >= wd14's 448
    assert (raw["image"]["width"], raw["image"]["height"]) == (640, 960)
    doc = _analyze(photos, ["wd14"], "--raw-pairs", "both", "--raw", "develop")
    images = {Path(img["path"]).name: img for img in doc["images"]}
    cell = images["IMG_0001.DNG"]["results"]["wd14"]
    assert cell["status"] == "ok" and cell["image"]["decoded_from"] == "raw-develop" and cell["image"]["half_size"]


def test_unknown_raw_options_are_refused(photos: Path) -> None:
    for flag, value in (("--raw", "thumb"), ("--raw-pairs", "raw")):
        proc = mltag("analyze", str(photos), "--models", "wd14", flag, value, "--no-store")
        assert proc.returncode == 2 and f"unknown {flag}" in proc.stderr, proc.stderr


def test_pair_jpeg_stands_for_raw_in_thumbnail_source(photos: Path) -> None:
    """The report's thumbnail reads the RAW's embedded preview (no develop), upright."""
    from orchestrator.report.thumbnails import thumbnail

    uri, why = thumbnail(photos / "IMG_0001.DNG")
    assert why is None and uri is not None
    import base64

    from PIL import Image

    assert Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).size == (171, 256)
