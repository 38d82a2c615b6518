"""One pool of host actors per model: sized from the model's needs and the cluster's resources,
fed a batch at a time from one queue, so a fast node takes more images and a slow model holds up
no other (every model's pool runs at once, each in its own driver threads).

Each replica is the ordinary supervisor (its rules unchanged) whose runner lives on a node; it
takes each next batch from the queue as it sends it ahead, so a model loads once per replica and
the next batch always waits inside the runner.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.cluster.connect import Cluster, Node
from orchestrator.cluster.transport import START_S, HostSlot
from orchestrator.images import ImageRef
from orchestrator.models.registry import ModelSpec
from orchestrator.run.jobs import ModelJob
from orchestrator.run.supervisor import ModelRun, Supervisor, cell
from schemas.status import CellStatus

Sink = Callable[[ImageRef, dict[str, Any], ModelRun], None]


@dataclass(frozen=True)
class Slot:
    node: Node
    cpus: float
    gpus: float


def plan(spec: ModelSpec, nodes: list[Node], models_at_once: int, requested: int | None, gpu: bool) -> list[Slot]:
    """Where this model's replicas go. Automatic: per node, its CPUs shared among the models that
    run at once, within its memory (model.toml memory_mb) and, for a GPU model, one GPU each.
    `requested` (--cluster-parallel N): N replicas, spread over the nodes by that capacity."""
    capacity: dict[str, int] = {}
    for node in nodes:
        cpu_cap = max(1, int(node.cpus // max(1, models_at_once))) if node.cpus >= 1 else 0
        mem_cap = int(node.memory_mb // spec.memory_mb) if spec.memory_mb else cpu_cap
        gpu_cap = int(node.gpus) if gpu else cpu_cap
        capacity[node.node_id] = max(0, min(cpu_cap, mem_cap, gpu_cap))
    order = sorted(nodes, key=lambda n: -capacity[n.node_id])
    total = requested if requested else sum(capacity.values())
    if not order or total <= 0:
        return []
    counts = {n.node_id: 0 for n in order}
    while sum(counts.values()) < total:  # round-robin, nodes with room first, then over-subscribe evenly
        room = [n for n in order if counts[n.node_id] < capacity[n.node_id]] or order
        for node in room:
            if sum(counts.values()) < total:
                counts[node.node_id] += 1
    slots = []
    for node in order:
        n = counts[node.node_id]
        share = node.cpus / max(1, models_at_once)
        for _ in range(n):
            slots.append(Slot(node, cpus=max(0.5, round(share / n, 2)) if share else 0.5, gpus=1.0 if gpu else 0.0))
    return slots


class ReplicaSupervisor(Supervisor):
    """The supervisor of one replica: it takes its images from the model's queue (`take`) a batch
    at a time, as it needs them, so the batch it sends ahead is there across the whole run (a
    faster replica simply takes more)."""

    def __init__(self, job: ModelJob, take: Callable[[int], list[ImageRef]]) -> None:
        super().__init__(job, lambda image, result: None)
        self.take = take

    def _refill(self, pending: deque[ImageRef]) -> None:
        if self.give_up is None and len(pending) < self.job.batch_size:  # gave up: the pool decides
            pending.extend(self.take(self.job.batch_size - len(pending)))


class Pool:
    """Runs one model's job over `images` on its slots; every cell goes to `sink` as it arrives."""

    def __init__(
        self,
        cluster: Cluster,
        run_id: str,
        job: ModelJob,
        slots: list[Slot],
        key: str | None,
        sink: Sink,
        progress: Callable[[str, int, int], None] | None,
    ) -> None:
        self.cluster, self.run_id, self.job, self.slots, self.key = cluster, run_id, job, slots, key
        self.sink = sink
        self.progress = progress
        self.queue: deque[ImageRef] = deque()
        self.lock = threading.Lock()
        self.done = 0
        self.total = 0
        self.placed = threading.Event()
        self.gave_up: list[ReplicaSupervisor] = []
        self.runs: list[ModelRun] = []
        self.errors: list[BaseException] = []  # a replica's exception (the store failing): raised by run()

    def run(self, images: list[ImageRef]) -> ModelRun:
        self.queue.extend(images)
        self.total = len(images)
        spec = self.job.spec
        hosts = [
            HostSlot(
                self.cluster.ray,
                self.run_id,
                f"{spec.name}-r{i}",
                s.node.node_id,
                spec.env if self.job.runner_module == "runners.host" and spec.env != "none" else None,
                self.key,
                s.cpus,
                s.gpus,
                spec.memory_mb,
            )
            for i, s in enumerate(self.slots)
        ]
        threads = [
            threading.Thread(target=self._replica, args=(host,), name=f"mltag-{host.name}", daemon=True)
            for host in hosts
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for host in hosts:
            host.discard()
        if self.errors:  # as on one machine: a store that cannot be written stops the run
            raise self.errors[0]
        return merge_runs(spec.name, self.runs, len(hosts))

    def _take(self, n: int) -> list[ImageRef]:
        with self.lock:
            return [self.queue.popleft() for _ in range(min(n, len(self.queue)))]

    def _emit(self, sup: ReplicaSupervisor) -> Callable[[ImageRef, dict[str, Any]], None]:
        def sink(image: ImageRef, result: dict[str, Any]) -> None:
            self.sink(image, result, sup.run_info)
            with self.lock:
                self.done += 1
                done = self.done
            if self.progress:
                self.progress(self.job.spec.name, done, self.total)

        return sink

    def _replica(self, host: HostSlot) -> None:
        # its log: <run id>/<model>-r<i>.log under the cache of the node it runs on
        job = replace(self.job, start=host.start, log_path=self.job.log_path.with_name(f"{host.name}.log"))
        sup = ReplicaSupervisor(job, self._take)
        sup.sink = self._emit(sup)
        try:
            if self._wait_placed(host, sup):
                self._work(sup)
        except BaseException as exc:  # stop the other replicas too, and let run() raise it
            with self.lock:
                self.errors.append(exc)
                self.queue.clear()
        finally:
            with self.lock:
                if sup.run_info.load or sup.give_up is not None:
                    self.runs.append(sup.run_info)

    def _wait_placed(self, host: HostSlot, sup: ReplicaSupervisor) -> bool:
        """Wait until Ray places this replica's host (a busy cluster queues it). A replica that is
        never placed before the queue empties just leaves; if no replica of the model is placed
        within START_S, the model's remaining images are skipped with the reason."""
        ready = host.create()
        deadline = time.monotonic() + START_S
        while True:
            done, _ = self.cluster.ray.wait([ready], timeout=1.0)
            if done:
                try:
                    host.host = self.cluster.ray.get(ready)["host"]
                except Exception:  # died while starting: the supervisor's first start reports it
                    host.discard()
                self.placed.set()
                return True
            with self.lock:
                empty = not self.queue
            if empty:
                host.discard()
                return False
            if time.monotonic() > deadline and not self.placed.is_set():
                host.discard()
                sup.give_up = cell(
                    CellStatus.SKIPPED,
                    f"no node of the cluster placed a host for "
                    f"{self.job.spec.name} within {START_S:g} s (it asks for {host.cpus:g} CPU, "
                    f"{host.gpus:g} GPU, {host.memory_mb} MB memory)",
                    fix="add a node with those resources, or lower --cluster-parallel",
                )
                sup.run(self._take(len(self.queue)))
                return False

    def _work(self, sup: ReplicaSupervisor) -> None:
        sup.run([])  # it takes its images from the queue as it goes
        if sup.give_up is not None:
            with self.lock:
                self.gave_up.append(sup)
                last = len(self.gave_up) == len(self.slots)
            if last:  # no replica left: the rest get this one's reason, as on one machine
                sup.run(self._take(len(self.queue)))


def merge_runs(name: str, runs: list[ModelRun], replicas: int) -> ModelRun:
    """One model entry from its replicas: the first load's facts; reloads, crashes, timeouts summed."""
    loaded = [r for r in runs if r.load]
    first = loaded[0] if loaded else (runs[0] if runs else ModelRun(name, status="skipped", message="not run"))
    out = ModelRun(
        name,
        status=first.status,
        message=first.message,
        fix=first.fix,
        hello=first.hello,
        load=first.load,
        log_path=first.log_path,
    )
    for run in runs:
        out.reloads += run.reloads
        out.crashes += run.crashes
        out.timeouts += run.timeouts
    failed = [r for r in runs if r.status != "ok"]
    if failed and len(failed) < len(runs):  # some replicas gave up, others carried on
        out.status, out.fix = "ok", failed[0].fix
        out.message = f"{len(failed)} of {replicas} replica(s) gave up ({failed[0].message})"
    elif failed:
        out.status, out.message, out.fix = failed[0].status, failed[0].message, failed[0].fix
    return out
