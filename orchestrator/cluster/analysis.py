"""An Analysis whose runners run on a Ray cluster; everything else is the single-machine one.

Resume, bad-image cells, the store (written here, by the driver alone, cell by cell), the judge
and every output are inherited unchanged. What differs: the model envs are prepared on every
node first (one task per node), each model runs as a pool of hosts (pool.py), all models run
at once, so a slow model holds up no other, and each photo is put in Ray's object store once for
all of them (photos.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from orchestrator.cluster.connect import Cluster, EnvOnNodes, expected_key
from orchestrator.cluster.photos import PhotoShelf
from orchestrator.cluster.pool import Pool, plan
from orchestrator.images import ImageRef
from orchestrator.models import envbuild
from orchestrator.models.registry import ModelSpec
from orchestrator.run.jobs import ModelJob
from orchestrator.run.pipeline import Analysis
from orchestrator.run.supervisor import ModelRun, cell
from schemas.status import CellStatus


class ClusterAnalysis(Analysis):
    def __init__(
        self, *args: Any, cluster: Cluster, replicas: int | None = None, build_envs: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.cluster = cluster
        self.replicas = replicas  # --cluster-parallel N per model; None = from resources
        self.build_envs = build_envs
        self.options = replace(self.options, parallel=max(1, len(self.models)))  # every model at once
        self.envs: dict[str, EnvOnNodes] = {}
        self.shelf: PhotoShelf | None = None  # the run's photos in the object store (photos.py)

    def prepare(self) -> dict[str, EnvOnNodes]:
        """Build or check the envs of every model (and the judge) on every node; once."""
        if not self.envs:
            names = sorted({spec.env for spec in self.reported_models})
            self.envs = self.cluster.prepare(names, build=self.build_envs)
        return self.envs

    def run(self, progress: Any = None) -> Any:
        self.prepare()
        self.shelf = PhotoShelf(self.cluster.ray, [spec.name for spec in self.models])
        try:
            return super().run(progress)
        finally:
            self.shelf.close()  # whatever an error left held is freed (its counts stay, for the tests)

    def run_model(
        self, spec: ModelSpec, progress: Any = None, payload: Callable[[ImageRef], dict[str, Any]] | None = None
    ) -> ModelRun:
        try:
            return super().run_model(spec, progress, payload)
        finally:
            if self.shelf is not None:  # finished, failed or never started: it needs no photo now
                self.shelf.leave(spec.name)

    def _env_state(self, spec: ModelSpec) -> tuple[str, str]:
        envs = self.prepare()[spec.env]
        if envs.ready:
            return "ready", ""
        why = "; ".join(f"{node}: {problem}" for node, problem in envs.problems.items()) or "no node answered"
        return "missing", f"on no node of the cluster ({why})"

    def _supervise(self, spec: ModelSpec, job: ModelJob, pending: list[ImageRef], progress: Any) -> ModelRun:
        nodes = self.prepare()[spec.env].ready
        gpu = self.options.device == "cuda" or (
            self.options.device == "auto" and any(n.gpus for n in nodes) and _uses_torch(spec.env)
        )
        slots = plan(spec, nodes, len(self.reported_models), self.replicas, gpu)
        if not slots:
            run = ModelRun(
                spec.name,
                status="skipped",
                fix="add a node with enough memory or GPUs",
                message=f"no node of the cluster can hold {spec.name} (memory_mb {spec.memory_mb}"
                f"{', 1 GPU' if gpu else ''})",
            )
            for image in pending:
                self.add_cell(spec, image, cell(CellStatus.SKIPPED, run.message, fix=run.fix), run)
            return run
        shelf = self.shelf if job.payload is None else None  # the judge sends its own payload
        if shelf is not None:
            shelf.expect(spec.name, pending)
            job.payload = shelf.payload

        def sink(image: ImageRef, result: dict[str, Any], run: ModelRun) -> None:
            self.add_cell(spec, image, result, run)
            if shelf is not None:
                shelf.done(spec.name, image)

        pool = Pool(self.cluster, self.run_id, job, slots, expected_key(spec.env), sink, progress)
        return pool.run(pending)


def _uses_torch(env: str) -> bool:
    """A torch env takes a GPU when the cluster has one (an onnx or client env never uses it)."""
    try:
        return envbuild.needs_torch(envbuild.env_paths(env))
    except OSError:
        return False
