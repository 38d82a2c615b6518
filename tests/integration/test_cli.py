"""The `mltag` command as a user runs it (a subprocess of the installed console script)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import jsonschema
import pytest

from orchestrator.models.registry import load_registry
from schemas.status import SUCCESS
from tests.support import SAMPLES, SCHEMA, mltag
from tests.tiny_models import tiny_weights

REGISTRY = load_registry()
# The prompted captioners (model.toml [infer] has `ask`) of the modern env, each on the checkpoint
# its builder's COVERS names; those of the tf4 and legacy envs and the served ones run in
# test_envs_side_by_side.py.
CAPTIONERS = [
    name
    for name, spec in REGISTRY.items()
    if spec.kind == "captioner" and "ask" in spec.infer and spec.env == "modern" and not spec.server
]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["analyze", "no/such/dir"], "path not found: no/such/dir"),
        (["analyze", "samples", "--models", "florance2"], "did you mean 'florence2'"),
        (["analyze", "samples", "--format", "xml"], "unknown --format 'xml'"),
        (["analyze", "samples", "--weights", "wd14"], "--weights expects KEY=VALUE"),
        (["analyze", "samples", "--models", "wd14", "--weights", "clip=/tmp"], "not selected: clip"),
        (["run", "wd14", "samples", "--weights", "wd14=/no/such/weights"], "path does not exist"),
        (["analyze", "samples", "--models", "wd14", "--store", "x.sqlite", "--no-store"], "exclude each other"),
        (["report", "no/such/dir"], "no results store at"),
        (["analyze", "samples", "--models", "wd14", "--format", "html"], "add --out FILE"),
        (["report", "--format", "html"], "add --out FILE"),
        (["report", "--html", "a.html", "--format", "csv"], "--html FILE is short for --format html --out FILE"),
        (["analyze", "samples", "--judge", "wd14"], "is a tagger, not a judge"),
        (["analyze", "samples", "--models", "qwen25-judge"], "use --judge qwen25-judge"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(args: list[str], expected: str) -> None:
    proc = mltag(*args)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1


def test_empty_folder(tmp_path: Path) -> None:
    proc = mltag("analyze", str(tmp_path), "--models", "wd14")
    assert proc.returncode == 2 and "no images" in proc.stderr


def test_models_lists_the_registry() -> None:
    proc = mltag("models")
    assert proc.returncode == 0
    assert {"clip", "wd14", "florence2", "qwen25-judge"} <= set(REGISTRY)
    for name in REGISTRY:
        assert name in proc.stdout


@pytest.mark.adapter
def test_analyze_three_models_json_validates(tmp_path: Path) -> None:
    """The spine's done criterion: clip, wd14 and florence2 on real photos, every cell ok."""
    folder = tmp_path / "photos"
    shutil.copytree(SAMPLES, folder, ignore=shutil.ignore_patterns("*.md"))
    weights = [f"--weights={m}={path}" for m, path in tiny_weights(["clip", "wd14", "florence2"]).items()]
    proc = mltag(
        "analyze",
        str(folder),
        "--models",
        "clip,wd14,florence2",
        *weights,
        "--format",
        "json",
        "--offline",
        "--device",
        "cpu",
        "--warmup",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # stdout holds the JSON and nothing else
    jsonschema.validate(doc, SCHEMA)
    assert len(doc["images"]) == 4
    statuses = {(img["path"], m): c["status"] for img in doc["images"] for m, c in img["results"].items()}
    assert set(statuses.values()) <= SUCCESS and len(statuses) == 12
    assert sum(s == "ok" for s in statuses.values()) >= 8  # taggers always tag; a random captioner may say nothing
    for model in doc["models"]:
        assert model["status"] == "ok" and model["device"] == "cpu"
        assert model["load_s"] > 0 and model["warmup_s"] is not None and model["runner"]["python"]


@pytest.mark.adapter
def test_table_and_csv_render(tiny_model, tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "out.csv"
    args = [
        "run",
        "wd14",
        str(SAMPLES / "brick.png"),
        str(bad),
        f"--weights=wd14={tiny_model('wd14')}",
        "--offline",
        "--no-store",
    ]
    proc = mltag(*args, "--format", "csv", "--out", str(out))
    assert proc.returncode == 1, "a bad image is a failed cell: exit 1"
    assert "brick.png" in out.read_text() and "bad_image" in out.read_text()
    assert "=== " in proc.stderr, "mltag run shows the runner's stderr live"
    table = mltag(*args, "--format", "table")
    assert "wd14" in table.stdout and "bad_image" in table.stdout and "brick.png" in table.stdout


@pytest.mark.adapter
def test_analyze_every_captioner_and_the_judge(tiny_model, tmp_path: Path) -> None:
    """Issue 3's done criterion: every captioning VLM on real photos, asked for caption and tags
    (BLIP, which has no tags prompt, keeps captioning), then the judge over their outputs."""
    assert CAPTIONERS, "no prompted captioner in the modern env"
    folder = tmp_path / "photos"
    shutil.copytree(SAMPLES, folder, ignore=shutil.ignore_patterns("*.md"))
    weights = [f"--weights={m}={path}" for m, path in tiny_weights(CAPTIONERS).items()]
    proc = mltag(
        "analyze",
        str(folder),
        "--models",
        ",".join(CAPTIONERS),
        *weights,
        f"--weights=qwen25-judge={tiny_model('judge')}",
        "--judge",
        "qwen25-judge",
        "--ask",
        "both",
        "--option",
        "max_new_tokens=8",
        "--format",
        "json",
        "--offline",
        "--device",
        "cpu",
        "--no-store",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert [m["name"] for m in doc["models"]] == [*CAPTIONERS, "qwen25-judge"]
    assert all(m["status"] == "ok" for m in doc["models"]), [(m["name"], m["message"]) for m in doc["models"]]
    for image in doc["images"]:
        for model, result in image["results"].items():
            assert result["status"] in SUCCESS, (model, result.get("message"))
            if model == "qwen25-judge":
                continue
            asked = {"caption"} if model == "blip" else {"caption", "tags"}
            assert set(result["raw"]["generations"]) == asked, model
            for run in result["raw"]["generations"].values():
                assert run["new_tokens"] <= 8 and run["prompt_tokens"] > 0 and run["tokens_per_s"] > 0


@pytest.mark.adapter
def test_weights_may_be_a_hugging_face_cache_root(tiny_model, tmp_path: Path) -> None:
    """`--weights MODEL=PATH` takes a cache root holding the pinned revision as well as a snapshot folder
    (orchestrator/models/loadspec.py): a real tiny BLIP laid out as huggingface_hub lays a download out
    (models--ORG--NAME/refs/main + snapshots/COMMIT/), loaded from the cache root; a cache without the
    pinned revision is a usage error before any model runs."""
    spec = REGISTRY["blip"]
    repo = tmp_path / "hub" / ("models--" + spec.hub_id.replace("/", "--"))
    snapshot = repo / "snapshots" / spec.revision
    shutil.copytree(tiny_model("blip"), snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(spec.revision)
    args = ["run", "blip", str(SAMPLES / "brick.png"), "--offline", "--no-store", "--format", "json"]
    proc = mltag(*args, f"--weights=blip={tmp_path / 'hub'}")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["images"][0]["results"]["blip"]["status"] == "ok"
    assert doc["models"][0]["model_version"].startswith(str(snapshot)), "the pinned snapshot was loaded"
    shutil.move(snapshot, repo / "snapshots" / ("0" * 40))  # the cache now holds another revision only
    refused = mltag(*args, f"--weights=blip={tmp_path / 'hub'}")
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.startswith(
        f"error: --weights blip={tmp_path / 'hub'}: this Hugging Face cache holds "
        f"{spec.hub_id} but not its pinned revision {spec.revision[:12]}"
    ), refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.adapter
def test_a_weights_folder_without_config_json_says_what_was_expected() -> None:
    """Not the library's list of every model type it knows (transformers 4.x prints hundreds): one line
    saying what the folder lacks, and what --weights takes; the whole traceback is in the runner log."""
    # a short path: the run's summary line is bounded (MESSAGE_CHARS) and a test worker's tmp_path is long
    with tempfile.TemporaryDirectory(prefix="w") as short:
        empty = Path(short) / "not-a-model"
        empty.mkdir()
        proc = mltag(
            "analyze",
            str(SAMPLES / "brick.png"),
            "--models",
            "qwen2vl-2b",
            "--offline",
            "--no-store",
            f"--weights=qwen2vl-2b={empty}",
            "--format",
            "json",
        )
        assert proc.returncode == 1, proc.stderr
        cell = json.loads(proc.stdout)["images"][0]["results"]["qwen2vl-2b"]
        assert cell["status"] == "skipped"
        assert (
            cell["message"] == f"weights missing: {empty} has no config.json: not a snapshot folder of "
            f"{REGISTRY['qwen2vl-2b'].hub_id}"
        )
        assert "a Hugging Face cache root holding" in cell["fix"] and "snapshot folder" in cell["fix"]
        said = " ".join(proc.stderr.split())  # rich wraps long lines at 80 columns in a pipe
        assert f"qwen2vl-2b: skipped: {cell['message']} fix: {cell['fix']}" in said, proc.stderr
        assert "Unrecognized model" not in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.adapter
def test_a_run_says_which_failures_the_store_did_not_take(tiny_model, tmp_path: Path) -> None:
    """A photo times out while the store keeps its earlier done cell (a failed cell never replaces a done
    one): the run exits 1 and its outputs show the done cell, so stderr counts this run's failures and
    names the kept results, and the JSON lists them (failures_kept). --timeout 0.001 s: no real runner
    answers within a millisecond, so every photo of the second run times out."""
    photos = [str(SAMPLES / "brick.png"), str(SAMPLES / "rocket.jpg")]
    args = [
        "analyze",
        *photos,
        "--models",
        "blip",
        f"--weights=blip={tiny_model('blip')}",
        "--offline",
        "--store",
        str(tmp_path / "results.sqlite"),
        "--format",
        "json",
    ]
    first = mltag(*args)
    assert first.returncode == 0 and json.loads(first.stdout)["failures_kept"] == [], first.stderr
    second = mltag(*args, "--force", "--timeout", "0.001")
    assert second.returncode == 1, second.stderr
    doc = json.loads(second.stdout)
    jsonschema.validate(doc, SCHEMA)
    assert all(img["results"]["blip"]["status"] in SUCCESS for img in doc["images"]), "the done cells are kept"
    assert [(k["model"], k["path"], k["status"]) for k in doc["failures_kept"]] == [
        ("blip", p, "timeout") for p in photos
    ]
    said = " ".join(second.stderr.split())
    assert "2 computed, 2 failed" in said, second.stderr
    assert (
        "2 result(s) failed in this run but the store kept their earlier done result, which the outputs show: "
        f"blip on {photos[0]}: timeout; blip on {photos[1]}: timeout"
    ) in said, second.stderr
