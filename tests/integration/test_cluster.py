"""`mltag analyze --cluster` on a local Ray cluster (one head, 2 CPUs), shared by the module's tests.

The real CLI, the real runner host and the wd14 / clip adapters on tiny models in their own envs:
the cluster's store and JSON equal the single-machine run's cell for cell; a runner SIGKILLed on
a node, a host actor killed with ray.kill, a hung image and a driver killed with -9 end as they do
on one machine, and no runner outlives the run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import psutil
import pytest

from orchestrator.paths import PROJECT_ROOT
from orchestrator.store import cellpack
from tests.integration.helpers import alive, fake_job, images, run, slow_photos, started_pids, wait_until_inferring
from tests.support import SAMPLES, SCHEMA, mltag
from tests.tiny_models import tiny_weights

ray = pytest.importorskip("ray", reason="the ray extra is not installed (make setup EXTRAS=ray; make test does it)")

pytestmark = [pytest.mark.cluster, pytest.mark.adapter]


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A local Ray head for the module (2 CPUs, no dashboard), torn down after it."""
    temp = tempfile.mkdtemp(prefix="mltag-ray-")  # short: Ray's socket paths have a length limit
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 2**20,
        namespace="mltag",
        log_to_driver=False,
        _temp_dir=temp,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def cluster_mltag(address: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return mltag(*args, "--cluster", "auto", env={"RAY_ADDRESS": address}, timeout=timeout)


def hosted_runners() -> list[psutil.Process]:
    """Runner processes whose parent is a Ray worker (our host actors), not any other mltag's."""
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            parent = proc.parent()
            if (
                "runners.host" in (proc.info["cmdline"] or [])
                and parent is not None
                and parent.name().startswith("ray::")
            ):
                out.append(proc)
        except psutil.Error:
            continue
    return out


def no_hosted_runner_left(wait_s: float = 20.0) -> bool:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not [p for p in hosted_runners() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]:
            return True
        time.sleep(0.2)
    return False


def weights(*models: str) -> list[str]:
    return [f"--weights={m}={path}" for m, path in tiny_weights(list(models)).items()]


def store_cells(path: Path) -> dict[tuple[str, str], dict]:
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT sha256, model, status, options_key, env_key, revision, run_id, cell FROM cells")
        terms = {vid: cellpack.unpack_terms(blob) for vid, blob in db.execute("SELECT id, terms FROM vocabularies")}
        return {
            (r[0], r[1]): {
                "status": r[2],
                "options_key": r[3],
                "env_key": r[4],
                "revision": r[5],
                "run_id": r[6],
                "cell": cellpack.unpack(r[7], terms.__getitem__),
            }
            for r in rows
        }
    finally:
        db.close()


def assert_same_cell(a: dict, b: dict, where: str) -> None:
    assert a["status"] == b["status"], where
    assert a.get("caption") == b.get("caption"), where
    assert [t["name"] for t in a.get("tags", [])] == [t["name"] for t in b.get("tags", [])], where
    for ta, tb in zip(a.get("tags", []), b.get("tags", []), strict=True):
        assert ta["score"] == pytest.approx(tb["score"], abs=1e-4), (where, ta["name"])
    assert set(a.get("raw", {})) == set(b.get("raw", {})), where


def test_cluster_run_matches_the_single_machine_run(ray_address: str, tmp_path: Path) -> None:
    """The issue's done criterion: wd14 and clip over a folder, --cluster auto on a local Ray cluster."""
    folder = tmp_path / "photos"
    shutil.copytree(SAMPLES, folder, ignore=shutil.ignore_patterns("*.md"))
    common = [
        "analyze",
        str(folder),
        "--models",
        "wd14,clip",
        *weights("wd14", "clip"),
        "--offline",
        "--format",
        "json",
    ]
    one = mltag(*common, "--store", str(tmp_path / "one.sqlite"))
    assert one.returncode == 0, one.stderr
    many = cluster_mltag(ray_address, *common, "--store", str(tmp_path / "cluster.sqlite"))
    assert many.returncode == 0, many.stderr
    assert "Ray cluster auto: 1 node(s), 2 CPU" in many.stderr
    doc_one, doc_many = json.loads(one.stdout), json.loads(many.stdout)
    jsonschema.validate(doc_many, SCHEMA)
    for model in doc_many["models"]:  # each model ran through a host actor's replica on the node
        assert model["status"] == "ok" and model["log"].endswith(f"{model['name']}-r0.log"), model
        assert (
            model["runner"]["packages"]
            == next(m for m in doc_one["models"] if m["name"] == model["name"])["runner"]["packages"]
        )
    assert [i["sha256"] for i in doc_one["images"]] == [i["sha256"] for i in doc_many["images"]]
    for a, b in zip(doc_one["images"], doc_many["images"], strict=True):
        assert set(a["results"]) == set(b["results"]) == {"wd14", "clip"}
        for model in a["results"]:
            assert_same_cell(a["results"][model], b["results"][model], f"{a['path']} {model}")
    cells_one, cells_many = store_cells(tmp_path / "one.sqlite"), store_cells(tmp_path / "cluster.sqlite")
    assert set(cells_one) == set(cells_many) and len(cells_one) == 8
    for key, a in cells_one.items():
        b = cells_many[key]
        assert (a["status"], a["options_key"], a["env_key"], a["revision"]) == (
            b["status"],
            b["options_key"],
            b["env_key"],
            b["revision"],
        ), key
        assert_same_cell(a["cell"], b["cell"], str(key))
    for model in doc_many["models"]:  # the host actor's count, in the runner's log (see RunnerHost.step)
        assert (
            "mltag host: 4 infer replies; the next request was already in the runner at 3 of them"
            in Path(model["log"]).read_text()
        ), f"{model['name']}: the next photo did not wait in the runner"
    assert no_hosted_runner_left()


def test_requests_are_pipelined_and_each_photo_is_put_once(
    ray_address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver in this process: each photo goes into the object store once (ray.put counted) and
    the same ObjectRef reaches both models' host actors; every infer request but the last of a
    replica is already in its runner when the reply before it is taken (the actor's own count);
    every photo is let go at the end; the cells equal the single-machine run's."""
    from orchestrator.cluster import transport
    from orchestrator.cluster.analysis import ClusterAnalysis
    from orchestrator.cluster.connect import Cluster
    from orchestrator.images import discover, hash_files
    from orchestrator.models.registry import load_registry, select
    from orchestrator.run.jobs import RunOptions
    from orchestrator.run.pipeline import Analysis
    from orchestrator.store import ResultStore

    folder = tmp_path / "photos"
    shutil.copytree(SAMPLES, folder, ignore=shutil.ignore_patterns("*.md"))
    images = hash_files(discover([folder]))
    specs = select(load_registry(), "wd14,clip")
    options = RunOptions(offline=True, weights=tiny_weights(["wd14", "clip"]))

    puts: list[int] = []
    put = ray.put

    def counted_put(value: Any, **kw: Any) -> Any:
        puts.append(len(value))
        return put(value, **kw)

    monkeypatch.setattr(ray, "put", counted_put)
    sent: list[tuple[str, Any]] = []  # (model's replica, the ObjectRef of each photo it was sent)
    split = transport._photo_refs

    def spy(ray_: Any, fields: dict[str, Any]) -> Any:
        out = split(ray_, fields)
        sent.extend((str(fields["images"][i]["id"]), ref) for i, ref in zip(out[1], out[2], strict=True))
        return out

    monkeypatch.setattr(transport, "_photo_refs", spy)

    many = ClusterAnalysis(
        images, specs, options, store=ResultStore(tmp_path / "cluster.sqlite"), cluster=Cluster(ray_address)
    )
    try:
        many.run()
        shelf = many.shelf
        assert shelf is not None
    finally:
        many.close()
    assert len(puts) == len({img.id for img in images}) == 4, "each photo put once for both models"
    assert sorted(puts) == sorted(img.size_bytes for img in images)
    by_photo: dict[str, set[Any]] = {}
    for photo, ref in sent:
        by_photo.setdefault(photo, set()).add(ref)
    assert len(sent) == 8 and all(len(refs) == 1 for refs in by_photo.values()), (
        "both models' actors get the same ObjectRef of a photo"
    )
    assert shelf.puts == 4 and not shelf.held and shelf.held_bytes == 0, "every photo let go at the end"
    for spec in specs:
        log = (many.log_dir / f"{spec.name}-r0.log").read_text()
        assert "mltag host: 4 infer replies; the next request was already in the runner at 3 of them" in log, log

    one = Analysis(images, specs, options, store=ResultStore(tmp_path / "one.sqlite"))
    try:
        one.run()
    finally:
        one.close()
    cells_one, cells_many = store_cells(tmp_path / "one.sqlite"), store_cells(tmp_path / "cluster.sqlite")
    assert set(cells_one) == set(cells_many) and len(cells_one) == 8
    for key, a in cells_one.items():
        assert a["status"] == cells_many[key]["status"] == "ok", key
        assert_same_cell(a["cell"], cells_many[key]["cell"], str(key))


@pytest.fixture(scope="module")
def slow_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 distinct 12 MP JPEGs: decoding keeps a run busy for seconds (as in test_cli_lifecycle)."""
    return slow_photos(tmp_path_factory.mktemp("slow") / "photos")


# The kill tests run one replica: with two (the 2-CPU head's default) the first finished image may be
# the other replica's while the killed one still loads, and a kill during a load retries no cell.
ONE_REPLICA = ("--cluster-parallel", "1")


def _all_ok_but_retried(proc: subprocess.Popen[str]) -> tuple[str, list[dict[str, Any]]]:
    """The run's JSON output (all 40 wd14 cells ok, checked here) and the cells that needed a retry."""
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    cells = [img["results"]["wd14"] for img in json.loads(stdout)["images"]]
    assert len(cells) == 40 and all(c["status"] == "ok" for c in cells)
    return stdout, [c for c in cells if c.get("attempts")]


def _start(ray_address: str, args: list[str]) -> tuple[subprocess.Popen[str], psutil.Process]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args, "--cluster", "auto"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RAY_ADDRESS": ray_address},
    )
    for _ in range(1200):
        runners = hosted_runners()
        if runners:
            return proc, runners[0]
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before a runner started: {proc.communicate()[1]}")
        time.sleep(0.05)
    raise AssertionError("no runner started on the cluster")


def test_runner_sigkilled_on_a_node_is_retried(ray_address: str, slow_folder: Path) -> None:
    args = [
        "analyze",
        str(slow_folder),
        "--models",
        "wd14",
        *weights("wd14"),
        "--offline",
        "--format",
        "json",
        "--no-store",
        *ONE_REPLICA,
    ]
    proc, runner = _start(ray_address, args)
    wait_until_inferring(proc, "wd14")
    runner.send_signal(signal.SIGKILL)
    stdout, retried = _all_ok_but_retried(proc)
    assert len(retried) == 1 and "killed by SIGKILL" in retried[0]["attempts"][0]["message"]
    assert retried[0]["message"] == "succeeded on attempt 2 after a crash"
    model = json.loads(stdout)["models"][0]
    assert model["crashes"] == 1 and len(model["reload_s"]) == 1
    assert no_hosted_runner_left()


def test_host_actor_killed_is_a_crash_retried_on_a_fresh_host(ray_address: str, slow_folder: Path) -> None:
    args = [
        "analyze",
        str(slow_folder),
        "--models",
        "wd14",
        *weights("wd14"),
        "--offline",
        "--format",
        "json",
        "--no-store",
        *ONE_REPLICA,
    ]
    proc, runner = _start(ray_address, args)
    wait_until_inferring(proc, "wd14")
    [host] = [a for a in ray.util.list_named_actors(all_namespaces=True) if "-wd14-r0-1" in a["name"]]
    ray.kill(ray.get_actor(host["name"], namespace=host["namespace"]))
    stdout, retried = _all_ok_but_retried(proc)
    assert len(retried) == 1 and "runner host on" in retried[0]["attempts"][0]["message"]
    assert "died while handling 'infer'" in retried[0]["attempts"][0]["message"]
    assert json.loads(stdout)["models"][0]["crashes"] == 1
    assert not runner.is_running() or runner.status() == psutil.STATUS_ZOMBIE, "the killed host's runner survived"
    assert no_hosted_runner_left()


@pytest.mark.parametrize("behaviour", ["hang_on:2", "crash_on:2", "crash_on_name:b.jpg"])
def test_fault_statuses_are_the_single_machine_ones(ray_address: str, tmp_path: Path, behaviour: str) -> None:
    """A hung image, a crash and a poison image through a host actor: the very cells the supervisor
    gives on one machine (the fake runner of tests/fakes; the supervisor's rules are the same code)."""
    from orchestrator.cluster.connect import Cluster
    from orchestrator.cluster.pool import Pool, plan
    from orchestrator.run.jobs import Limits

    limits = Limits(hello_s=30, load_s=30, infer_s=1.0)
    (tmp_path / "local").mkdir()
    (tmp_path / "hosted").mkdir()
    local_info, local = run(
        fake_job(tmp_path / "local", behaviour, limits), images(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    )
    cluster = Cluster(ray_address)
    job = fake_job(tmp_path / "hosted", behaviour, limits)
    hosted: dict[str, dict] = {}
    pool = Pool(
        cluster,
        f"test-{os.getpid()}",
        job,
        plan(job.spec, cluster.nodes(), 1, 1, False),
        None,
        lambda image, result, run: hosted.__setitem__(image.path.name, result),
        None,
    )
    info = pool.run(images(tmp_path, ["a.jpg", "b.jpg", "c.jpg"]))
    assert {n: c["status"] for n, c in hosted.items()} == {n: c["status"] for n, c in local.items()}
    for name, cell in local.items():
        assert hosted[name].get("message", "").split(" (")[0] == cell.get("message", "").split(" (")[0], name
        assert len(hosted[name].get("attempts", [])) == len(cell.get("attempts", [])), name
    assert (info.crashes, info.timeouts, len(info.reloads)) == (
        local_info.crashes,
        local_info.timeouts,
        len(local_info.reloads),
    )
    time.sleep(0.5)
    assert alive(started_pids(tmp_path / "hosted")) == [], "a hosted runner (or its child) outlived the pool"


def test_driver_killed_with_9_then_resumed(ray_address: str, slow_folder: Path, tmp_path: Path) -> None:
    store = tmp_path / "results.sqlite"
    args = [
        "analyze",
        str(slow_folder),
        "--models",
        "wd14",
        *weights("wd14"),
        "--offline",
        "--format",
        "json",
        "--out",
        str(tmp_path / "out.json"),
        "--store",
        str(store),
    ]
    proc, _ = _start(ray_address, args)
    before: dict = {}
    for _ in range(600):
        before = store_cells(store) if store.exists() else {}
        if len(before) >= 5:
            break
        time.sleep(0.1)
    proc.kill()
    proc.communicate(timeout=60)
    assert 5 <= len(before) < 40, "kill the driver mid-run"
    assert no_hosted_runner_left(), "the killed driver's hosts and runners must go with it"
    before = store_cells(store)  # every cell committed before the kill
    again = cluster_mltag(ray_address, *args)
    assert again.returncode == 0, again.stderr
    assert f"{len(before)} result(s) reused, {40 - len(before)} computed" in again.stderr
    after = store_cells(store)
    assert len(after) == 40 and all(c["status"] == "ok" for c in after.values())
    assert all(after[key]["run_id"] == cell["run_id"] for key, cell in before.items()), "a stored cell was redone"
    assert no_hosted_runner_left()


def test_health_shows_each_node_its_envs_and_devices(ray_address: str) -> None:
    proc = mltag("health", "wd14", "clip", "--cluster", "auto", env={"RAY_ADDRESS": ray_address})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "head)" in out and "healthy: 2 CPU, 0 GPU" in out and "devices: cpu" in out
    assert "ok   env onnx (wd14): key " in out and "onnxruntime 1.31.1" in out
    assert "ok   env modern (clip): key " in out and "transformers" in out
