"""The wd14 adapter end to end: a tiny random WD v3-style ONNX model through the real runner host.

Scores of a random model mean nothing, so these tests check structure and invariants: every tag
scored, thresholds honoured, one rating, and preprocessing (white alpha and padding, BGR) both at
the pixel level and through the model. Order and batches: tests/adapters/test_contract.py.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.errors import RemoteError
from orchestrator.models.registry import load_registry
from schemas.status import SUCCESS
from tests.support import SAMPLES

pytestmark = pytest.mark.adapter

SAMPLE_FILES = [SAMPLES / name for name in ("brick.png", "chelsea.png", "coffee.png", "rocket.jpg")]
KAOMOJI_IN_TINY_CSV = ("^_^", "0_0")
CATEGORY_NAMES = {"9": "rating", "0": "general", "4": "character"}


@pytest.fixture(scope="module")
def rows(tiny: Path) -> list[dict[str, str]]:
    with open(tiny / "selected_tags.csv", newline="") as f:
        return list(csv.DictReader(f))


def _names(rows: list[dict[str, str]], category: str) -> list[str]:
    return [r["name"] for r in rows if CATEGORY_NAMES[r["category"]] == category]


def _shown(name: str) -> str:
    return name if name in KAOMOJI_IN_TINY_CSV else name.replace("_", " ")


def _save(img: Image.Image, path: Path) -> Path:
    img.save(path)
    return path


def _scores(cell: dict) -> list[float]:
    return list(cell["raw"]["scores"].values())


def _max_diff(a: dict, b: dict) -> float:
    return max(abs(x - y) for x, y in zip(_scores(a), _scores(b), strict=True))


def _generated(tmp_path: Path) -> list[Path]:
    """A wide RGBA gradient with transparency, a tall greyscale image, a tiny one (upscaled)."""
    wide = Image.merge(
        "RGBA",
        [
            Image.linear_gradient("L").resize((300, 120)),
            Image.new("L", (300, 120), 90),
            Image.linear_gradient("L").rotate(90).resize((300, 120)),
            Image.linear_gradient("L").resize((300, 120)),
        ],
    )
    tall = Image.radial_gradient("L").resize((100, 260))
    tiny = Image.new("RGB", (10, 10), (200, 30, 30))
    return [_save(wide, tmp_path / "wide.png"), _save(tall, tmp_path / "tall.png"), _save(tiny, tmp_path / "tiny.jpg")]


def _check_cell(cell: dict, rows: list[dict[str, str]], general: float, character: float) -> None:
    assert cell["status"] in SUCCESS, cell.get("message")
    assert isinstance(cell["inference_s"], float) and cell["inference_s"] >= 0
    raw = cell["raw"]
    assert list(raw["scores"]) == [r["name"] for r in rows]  # every output, in CSV order
    assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in raw["scores"].values())
    assert raw["thresholds"] == {"general": general, "character": character}
    assert raw["ratings"] == {n: raw["scores"][n] for n in _names(rows, "rating")}

    tags = cell["tags"]
    for tag in tags:
        assert set(tag) == {"name", "score", "category"}
        assert isinstance(tag["name"], str) and isinstance(tag["score"], float)
        assert 0.0 <= tag["score"] <= 1.0
    assert [t["score"] for t in tags] == sorted((t["score"] for t in tags), reverse=True)
    ratings = [t for t in tags if t["category"] == "rating"]
    assert len(ratings) == 1
    assert ratings[0]["name"] == max(raw["ratings"], key=raw["ratings"].get)

    thresholds = {"general": general, "character": character}
    for kind, threshold in thresholds.items():
        expected = {_shown(n) for n in _names(rows, kind) if raw["scores"][n] >= threshold}
        got = [t for t in tags if t["category"] == kind]
        assert {t["name"] for t in got} == expected
        assert len(got) == len(expected)
    passed = len(tags) - 1
    assert cell["status"] == ("ok" if passed else "no_tags")
    if not passed:
        assert cell["message"]


def test_load_reports_cpu_float32_and_scoring(run_model, tiny: Path, rows: list[dict[str, str]]) -> None:
    load, cells = run_model("wd14", [SAMPLES / "chelsea.png"], weights=tiny)
    assert load["device"] == "cpu"
    assert load["dtype"] == "float32"
    assert str(tiny) in load["model_version"]
    assert any(f"independent sigmoid per tag ({len(rows)} tags)" in note for note in load["notes"])
    assert len(cells) == 1 and cells[0]["id"] == "img0"


def test_samples_with_model_toml_defaults(run_model, tiny: Path, rows: list[dict[str, str]], tmp_path: Path) -> None:
    defaults = load_registry()["wd14"].infer
    paths = SAMPLE_FILES + _generated(tmp_path)
    _, cells = run_model("wd14", paths, weights=tiny)
    assert [c["id"] for c in cells] == [f"img{i}" for i in range(len(paths))]
    for cell in cells:
        _check_cell(cell, rows, defaults["general_threshold"], defaults["character_threshold"])


def test_zero_thresholds_return_every_tag_with_display_names(run_model, tiny: Path, rows: list[dict[str, str]]) -> None:
    _, [cell] = run_model(
        "wd14", [SAMPLES / "coffee.png"], weights=tiny, general_threshold=0.0, character_threshold=0.0
    )
    _check_cell(cell, rows, 0.0, 0.0)
    assert cell["status"] == "ok"
    names = {t["name"] for t in cell["tags"]}
    assert len(cell["tags"]) == 1 + len(_names(rows, "general")) + len(_names(rows, "character"))
    assert {"no humans", "brick wall", "tiny character (test)", "^_^", "0_0"} <= names
    assert "no_humans" not in names


def test_thresholds_above_one_give_no_tags(run_model, tiny: Path, rows: list[dict[str, str]]) -> None:
    _, [cell] = run_model(
        "wd14", [SAMPLES / "rocket.jpg"], weights=tiny, general_threshold=1.01, character_threshold=1.01
    )
    _check_cell(cell, rows, 1.01, 1.01)
    assert cell["status"] == "no_tags"
    assert [t["category"] for t in cell["tags"]] == ["rating"]
    assert len(cell["raw"]["scores"]) == len(rows)


@pytest.mark.parametrize(("general", "character", "kept"), [(1.01, 0.0, "character"), (0.0, 1.01, "general")])
def test_each_category_has_its_own_threshold(
    run_model, tiny: Path, rows: list[dict[str, str]], general: float, character: float, kept: str
) -> None:
    _, [cell] = run_model(
        "wd14", [SAMPLES / "chelsea.png"], weights=tiny, general_threshold=general, character_threshold=character
    )
    _check_cell(cell, rows, general, character)
    assert sorted(t["category"] for t in cell["tags"]) == sorted(["rating"] + [kept] * len(_names(rows, kept)))


def test_transparency_and_padding_become_white(run_model, tiny: Path, tmp_path: Path) -> None:
    """Inputs the reference preprocessing maps to the same pixels must score the same."""
    photo = Image.open(SAMPLES / "rocket.jpg").convert("RGB").resize((240, 120))
    side, offset = 240, (0, (240 - 120) // 2)
    holed = photo.convert("RGBA")
    holed.paste((0, 0, 0, 0), (60, 30, 180, 90))  # fully transparent black hole
    flattened = photo.copy()
    flattened.paste((255, 255, 255), (60, 30, 180, 90))
    white_square = Image.new("RGB", (side, side), (255, 255, 255))
    white_square.paste(photo, offset)
    black_square = Image.new("RGB", (side, side), (0, 0, 0))
    black_square.paste(photo, offset)
    paths = [
        _save(img, tmp_path / f"{name}.png")
        for name, img in (
            ("holed", holed),
            ("flattened", flattened),
            ("wide", photo),
            ("white", white_square),
            ("black", black_square),
        )
    ]
    _, cells = run_model("wd14", paths, weights=tiny)
    holed_c, flat_c, wide_c, white_c, black_c = cells
    assert _max_diff(holed_c, flat_c) < 1e-5
    assert _max_diff(wide_c, white_c) < 1e-5
    assert _max_diff(wide_c, black_c) > 1e-3  # the padding colour does reach the scores


PIXEL_CHECK = """
import io, json
import numpy as np
from PIL import Image
from runners._images import decode
from runners.adapters.wd14 import preprocess

def png(img):
    buf = io.BytesIO(); img.save(buf, "PNG"); return buf.getvalue()

wide = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
wide.paste((255, 0, 0, 255), (0, 0, 20, 20))   # left half opaque red, right half transparent
tall = Image.new("RGB", (10, 40), (0, 128, 255))
# The padded squares drawn by hand, to resize with PIL's BICUBIC as the reference Space does.
wide_square = Image.new("RGB", (40, 40), "white"); wide_square.paste((255, 0, 0), (0, 10, 20, 30))
tall_square = Image.new("RGB", (40, 40), "white"); tall_square.paste((0, 128, 255), (15, 0, 25, 40))
out = {}
for name, img, size, square in (("wide", wide, 40, wide_square), ("tall", tall, 40, tall_square),
                                ("small", wide, 20, wide_square), ("big", tall, 72, tall_square)):
    arr = preprocess(decode(name, name, png(img)), size)
    ref = np.asarray(square.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)[:, :, ::-1]
    out[name] = {"shape": list(arr.shape), "dtype": str(arr.dtype), "min": float(arr.min()),
                 "max": float(arr.max()), "pixels": arr.tolist(), "bicubic_reference": bool((arr == ref).all())}
print(json.dumps(out))
"""


def test_preprocessing_pixels(env_script: Callable[..., dict]) -> None:
    """Pixel-level check in the onnx env (numpy is not in the test venv)."""
    out = env_script("onnx", PIXEL_CHECK, timeout=120)
    white, red_bgr, orange_bgr = [255.0] * 3, [0.0, 0.0, 255.0], [255.0, 128.0, 0.0]

    wide = out["wide"]
    assert wide["shape"] == [40, 40, 3] and wide["dtype"] == "float32"
    px = wide["pixels"]
    assert all(px[y][x] == white for y in (*range(10), *range(30, 40)) for x in range(40))  # pad rows
    assert all(px[y][x] == red_bgr for y in range(10, 30) for x in range(20))  # BGR order, unscaled
    assert all(px[y][x] == white for y in range(10, 30) for x in range(20, 40))  # alpha on white

    tall = out["tall"]["pixels"]
    assert all(tall[y][x] == white for y in range(40) for x in (*range(15), *range(25, 40)))
    assert all(tall[y][x] == orange_bgr for y in range(40) for x in range(15, 25))

    for name, size in (("small", 20), ("big", 72)):  # resized: still 0-255 floats, pad stays white
        assert out[name]["shape"] == [size, size, 3] and out[name]["dtype"] == "float32"
        assert 0.0 <= out[name]["min"] < out[name]["max"] <= 255.0
        assert out[name]["pixels"][0][0] == white
    assert out["small"]["pixels"][10][2] == red_bgr  # well inside the red half after a 2x shrink
    assert all(out[name]["bicubic_reference"] for name in out)


def _copy_weights(tiny: Path, dest: Path, csv_rows: list[dict[str, str]] | None) -> Path:
    dest.mkdir()
    shutil.copy(tiny / "model.onnx", dest / "model.onnx")
    if csv_rows is not None:
        with open(dest / "selected_tags.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["tag_id", "name", "category", "count"])
            writer.writeheader()
            writer.writerows(csv_rows)
    return dest


def test_missing_tag_file_fails_load_clearly(run_model, tiny: Path, tmp_path: Path) -> None:
    weights = _copy_weights(tiny, tmp_path / "no-csv", None)
    with pytest.raises(RemoteError, match="selected_tags.csv not found"):
        run_model("wd14", [SAMPLES / "chelsea.png"], weights=weights)


def test_tag_file_that_does_not_match_the_model_fails_load(
    run_model, tiny: Path, tmp_path: Path, rows: list[dict[str, str]]
) -> None:
    weights = _copy_weights(tiny, tmp_path / "short-csv", rows[:-1])
    with pytest.raises(RemoteError, match=f"{len(rows) - 1} rows but the model has {len(rows)} outputs"):
        run_model("wd14", [SAMPLES / "chelsea.png"], weights=weights)


def _camera_jpeg(path: Path, orientation: int = 1) -> Path:
    """A 1800 x 1200 photo-like JPEG (a sample photo upscaled, with noise), optionally EXIF-rotated."""
    photo = Image.open(SAMPLES / "rocket.jpg").convert("RGB").resize((1800, 1200), Image.Resampling.BICUBIC)
    noise = Image.effect_noise((1800, 1200), 24).convert("RGB")
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    Image.blend(photo, noise, 0.15).save(path, "JPEG", quality=90, exif=exif.tobytes())
    return path


def test_fast_decode_drafts_to_the_input_size_and_reports_the_original(run_model, tiny: Path, tmp_path: Path) -> None:
    """Fast (default): the JPEG is drafted at the smallest scale whose longest side is still >= 448
    (1800 -> 450); exact: decoded at full size. `image` describes the original either way."""
    photo = _camera_jpeg(tmp_path / "rotated.jpg", orientation=6)  # shown as 1200 x 1800 portrait
    _, [fast] = run_model("wd14", [photo], weights=tiny)
    _, [exact] = run_model("wd14", [photo], weights=tiny, load_options={"exact_decode": True})
    for cell in (fast, exact):
        assert cell["status"] in SUCCESS
        image = cell["image"]
        assert (image["width"], image["height"], image["exif_orientation"], image["format"]) == (1200, 1800, 6, "JPEG")
    assert fast["image"]["draft"] is True and fast["image"]["draft_scale"] == 4
    assert (fast["image"]["decoded_width"], fast["image"]["decoded_height"]) == (300, 450)  # upright, long side >= 448
    assert exact["image"]["draft"] is False
    assert (exact["image"]["decoded_width"], exact["image"]["decoded_height"]) == (1200, 1800)
    # Both paths end in the same 448 px square: the scores stay close (bench/decode.py: real-size model).
    assert _max_diff(fast, exact) < 0.05


REFERENCE_SCORES = """
import json, sys
import numpy as np
import onnxruntime as ort
from PIL import Image

# SmilingWolf/wd-tagger app.py, prepare_image(): RGBA on white, pad to a white square, BICUBIC, BGR.
model_dir, path = sys.argv[1], sys.argv[2]
session = ort.InferenceSession(model_dir + "/model.onnx", providers=["CPUExecutionProvider"])
size = session.get_inputs()[0].shape[1]
image = Image.open(path).convert("RGBA")
canvas = Image.new("RGBA", image.size, (255, 255, 255))
canvas.alpha_composite(image)
image = canvas.convert("RGB")
side = max(image.size)
padded = Image.new("RGB", (side, side), (255, 255, 255))
padded.paste(image, ((side - image.size[0]) // 2, (side - image.size[1]) // 2))
if side != size:
    padded = padded.resize((size, size), Image.BICUBIC)
array = np.expand_dims(np.asarray(padded, dtype=np.float32)[:, :, ::-1], 0)
print(json.dumps(session.run(None, {session.get_inputs()[0].name: array})[0][0].astype(float).tolist()))
"""


def test_exact_decode_scores_equal_the_reference_preprocessing(
    run_model, tiny: Path, tmp_path: Path, env_script: Callable[..., list]
) -> None:
    photo = _camera_jpeg(tmp_path / "camera.jpg")
    reference = env_script("onnx", REFERENCE_SCORES, str(tiny), str(photo), timeout=120)
    _, [exact] = run_model("wd14", [photo], weights=tiny, load_options={"exact_decode": True})
    _, [fast] = run_model("wd14", [photo], weights=tiny)
    assert max(abs(a - b) for a, b in zip(_scores(exact), reference, strict=True)) < 1e-6
    assert _scores(fast) != _scores(exact), "the fast path decodes differently (or the exact test proves nothing)"


def test_exact_decode_flag_reaches_the_runner_and_keys_resume(tiny: Path, tmp_path: Path) -> None:
    """`--exact-decode` travels CLI -> load spec -> host, and is part of the store's options key:
    fast cells are not reused for an exact run, exact cells are reused for the next exact run."""
    from tests.support import mltag

    folder = tmp_path / "photos"
    folder.mkdir()
    _camera_jpeg(folder / "camera.jpg")
    args = [
        "analyze",
        str(folder),
        "--models",
        "wd14",
        "--weights",
        f"wd14={tiny}",
        "--offline",
        "--store",
        str(tmp_path / "results.sqlite"),
        "--format",
        "json",
    ]
    runs = [mltag(*args), mltag(*args, "--exact-decode"), mltag(*args, "--exact-decode")]
    assert all(run.returncode == 0 for run in runs), [run.stderr[-2000:] for run in runs]
    fast, exact, again = (json.loads(run.stdout)["images"][0]["results"]["wd14"] for run in runs)
    assert fast["image"]["draft"] is True and exact["image"]["draft"] is False
    assert exact["image"]["decoded_width"] == exact["image"]["width"] == 1800
    assert "1 result(s) reused, 0 computed" in runs[2].stderr
    assert (again["raw"], again["image"]) == (exact["raw"], exact["image"])
    assert "0 result(s) reused, 1 computed" in runs[1].stderr, "a fast cell must not stand in for an exact one"
