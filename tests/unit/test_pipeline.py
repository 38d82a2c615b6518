"""The analysis document: caption tags added for captioners, every cell present, exit codes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from orchestrator.images import hash_file
from orchestrator.run.jobs import RunOptions, infer_overrides, thread_share
from orchestrator.run.pipeline import Analysis
from tests.support import spec


def test_captioner_cells_get_estimated_caption_tags(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    image = hash_file(tmp_path / "a.jpg")
    captioner, tagger = spec("cap", kind="captioner"), spec("tag", kind="tagger")
    analysis = Analysis([image], [captioner, tagger], RunOptions())
    od_tag = {"name": "chair", "score": 0.7, "category": "od", "estimated": True}
    analysis.add_cell(
        captioner,
        image,
        {
            "status": "ok",
            "caption": "A derelict hallway with peeling paint and broken windows, a chair in the corner.",
            "tags": [od_tag],
        },
    )
    analysis.add_cell(tagger, image, {"status": "ok", "caption": "not a captioner", "tags": []})
    doc = analysis.results().document()
    cells = doc["images"][0]["results"]
    names = [t["name"] for t in cells["cap"]["tags"]]
    assert names[0] == "chair" and names.count("chair") == 1, "model tags first, no duplicates"
    assert {"peeling paint", "broken window", "hallway"} <= set(names)
    assert all(t["estimated"] for t in cells["cap"]["tags"])
    assert cells["tag"]["tags"] == [], "only captioners get caption tags"
    assert analysis.exit_code() == 0


def test_missing_cell_is_skipped_and_fails_the_exit_code(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"x")
    analysis = Analysis([hash_file(tmp_path / "a.jpg")], [spec("m")], RunOptions())
    doc = analysis.results().document()
    assert doc["images"][0]["results"]["m"]["status"] == "skipped"
    assert doc["models"][0]["status"] == "skipped" and analysis.exit_code() == 1


def test_option_scoping(tmp_path: Path) -> None:
    options = RunOptions(infer_overrides={"top_k": 5, "wd.general_threshold": 0.5, "other.x": 1})
    analysis = Analysis([], [spec("wd"), spec("clip")], options)
    assert infer_overrides(analysis.options, spec("wd")) == {"top_k": 5, "general_threshold": 0.5}
    assert infer_overrides(analysis.options, spec("clip")) == {"top_k": 5}


def test_ask_for_tags_skips_captioners_without_a_tags_prompt() -> None:
    vlm, blip, tagger = spec("vlm", kind="captioner"), spec("blip", kind="captioner"), spec("wd")
    vlm.infer["tags_prompt"] = "List tags."
    analysis = Analysis([], [vlm, blip, tagger], RunOptions(ask="both", prompt="Describe."))
    assert infer_overrides(analysis.options, vlm) == {"ask": "both", "prompt": "Describe."}
    assert infer_overrides(analysis.options, blip) == {"prompt": "Describe."}, "BLIP keeps captioning"
    assert infer_overrides(analysis.options, tagger) == {}
    assert infer_overrides(Analysis([], [blip], RunOptions(ask="caption")).options, blip) == {"ask": "caption"}


def test_identical_files_run_once_and_both_paths_are_reported(tmp_path: Path) -> None:
    for name in ("a.jpg", "copy-of-a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"same" if name != "b.jpg" else b"other")
    images = [hash_file(tmp_path / n) for n in ("a.jpg", "copy-of-a.jpg", "b.jpg")]
    analysis = Analysis(images, [spec("m")], RunOptions())
    assert [i.path.name for i in analysis.unique] == ["a.jpg", "b.jpg"]
    analysis.add_cell(spec("m"), images[0], {"status": "ok", "tags": []})
    doc = analysis.results().document()
    assert [i["results"]["m"]["status"] for i in doc["images"]] == ["ok", "ok", "skipped"]
    assert doc["images"][1]["duplicate_of"].endswith("a.jpg") and "duplicate_of" not in doc["images"][0]


def test_an_internal_error_fails_one_model_not_the_run(tmp_path: Path, monkeypatch) -> None:
    from orchestrator.models import envbuild
    from orchestrator.run.supervisor import Supervisor

    (tmp_path / "a.jpg").write_bytes(b"x")
    monkeypatch.setattr(envbuild, "env_state", lambda env: ("ready", ""))
    monkeypatch.setattr(Supervisor, "run", lambda self, images: 1 / 0)
    analysis = Analysis([hash_file(tmp_path / "a.jpg")], [spec("m1"), spec("m2")], RunOptions())
    doc = analysis.run().document()
    assert [m["status"] for m in doc["models"]] == ["failed", "failed"]
    cell = doc["images"][0]["results"]["m1"]
    assert cell["status"] == "error" and "ZeroDivisionError" in cell["message"] and cell["error"]["traceback"]


def test_runners_start_with_the_mps_cpu_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Apple silicon an operator MPS lacks must fall back to the CPU, not fail the model."""
    from orchestrator.run.processes import runner_env

    monkeypatch.delenv("PYTORCH_ENABLE_MPS_FALLBACK", raising=False)
    assert runner_env(Path(sys.executable), offline=True)["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"
    monkeypatch.setenv("PYTORCH_ENABLE_MPS_FALLBACK", "0")  # the user's own choice wins
    assert runner_env(Path(sys.executable), offline=True)["PYTORCH_ENABLE_MPS_FALLBACK"] == "0"


def test_the_first_runner_starts_before_the_images_unless_the_store_may_spare_it(tmp_path: Path, monkeypatch) -> None:
    """start_early: the first model's runner loads while the files are hashed, but only when it will
    run whatever the images are (no store, --force, or no stored result of it with these options)."""
    from orchestrator.models import envbuild
    from orchestrator.run import pipeline
    from orchestrator.run.jobs import ModelJob
    from orchestrator.store import CellMeta, ResultStore

    started: list[str] = []

    class Launched:
        cancelled = False

        def cancel(self) -> None:
            Launched.cancelled = True

    monkeypatch.setattr(envbuild, "env_state", lambda env: ("ready", ""))

    def launch(job: ModelJob) -> Launched:
        started.append(job.spec.name)
        return Launched()

    monkeypatch.setattr(pipeline, "launch", launch)
    no_store = Analysis([], [spec("m1"), spec("m2")], RunOptions())
    no_store.start_early()
    assert started == ["m1"], "--no-store: only the first model, at once"
    no_store.close()
    assert Launched.cancelled, "a runner started early and never used is stopped"

    (tmp_path / "a.jpg").write_bytes(b"x")
    image = hash_file(tmp_path / "a.jpg")
    store = ResultStore(tmp_path / "results.sqlite")
    key = Analysis([], [spec("m1")], RunOptions(), store=store)._cell_meta(spec("m1")).options_key
    store.begin_run("r1", 0.0, {}, [])
    store.record_images("r1", [image])
    store.put_cell("r1", image.sha256, "m1", {"status": "ok", "tags": []}, CellMeta(options_key=key))
    started.clear()
    Analysis([], [spec("m1")], RunOptions(), store=store).start_early()
    assert started == [], "the store may have every result: the runner starts only if it is needed"
    Analysis([], [spec("m1")], RunOptions(), store=store, force=True).start_early()
    assert started == ["m1"], "--force recomputes everything"
    started.clear()
    Analysis([], [spec("m1")], RunOptions(infer_overrides={"x": 1}), store=store).start_early()
    assert started == ["m1"], "other options: nothing stored to reuse"


def test_a_users_thread_budget_reaches_the_runners(monkeypatch: pytest.MonkeyPatch) -> None:
    """OMP_NUM_THREADS (torch, and wd14's onnxruntime session) was filtered out of a local runner's env."""
    from orchestrator.run.processes import runner_env

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("MKL_NUM_THREADS", "3")
    env = runner_env(Path(sys.executable), offline=True)
    assert (env["OMP_NUM_THREADS"], env["MKL_NUM_THREADS"]) == ("3", "3")


def test_runners_at_once_share_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """--parallel N over several models: each runner gets its share of the cores (runners with a thread per
    core each spend the CPU waiting for each other); a model or a judge running alone keeps torch's
    default; a user's own setting wins."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert thread_share(1) == {}
    assert thread_share(2) == {"OMP_NUM_THREADS": "4"}
    assert thread_share(3) == {"OMP_NUM_THREADS": "2"}
    assert thread_share(16) == {"OMP_NUM_THREADS": "1"}
    models = [spec("m1"), spec("m2"), spec("m3")]
    analysis = Analysis([], models, RunOptions(parallel=2), judge=spec("j", kind="judge"))
    assert analysis._job(models[0]).extra_env["OMP_NUM_THREADS"] == "4"
    assert "OMP_NUM_THREADS" not in Analysis([], models[:1], RunOptions(parallel=2))._job(models[0]).extra_env
    judged: list[dict[str, str]] = []  # the judge's job, as run_judge hands it to run_model
    monkeypatch.setattr(
        analysis, "run_model", lambda s, progress=None, payload=None: judged.append(analysis._job(s).extra_env)
    )
    analysis.run_judge()
    assert judged == [{}], "the judge runs after the models, alone"
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    assert thread_share(2) == {}
