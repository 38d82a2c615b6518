"""One analysis: images x models -> a result document (the JSON schema's shape).

Model-major: each selected model's runner streams through every image, so a model loads once.
Models run one after another by default (2-core machines, multi-GB models); --parallel N runs
N at once. A model whose env is missing, or that fails, never stops the others.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator import __version__, envbuild
from orchestrator.images import ImageRef
from orchestrator.loadspec import build_load_spec, read_vocabulary
from orchestrator.paths import logs_dir
from orchestrator.registry import ModelSpec
from orchestrator.supervisor import Limits, ModelJob, ModelRun, Supervisor, cell
from schemas.status import CellStatus

SCHEMA_VERSION = 1


@dataclass
class RunOptions:
    timeout_s: float | None = None       # per image; None = model.toml's timeout_s or 60 s
    device: str = "auto"
    dtype: str = "auto"
    offline: bool = False
    weights: dict[str, Path] = field(default_factory=dict)
    warmup: bool = False
    batch_size: int = 1
    parallel: int = 1
    threshold: float | None = None       # display threshold (raw scores are always kept)
    top: int = 10                        # tags shown per model in the table
    infer_overrides: dict[str, Any] = field(default_factory=dict)
    retry_crashed: bool = True


def _run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"


class Analysis:
    """Collects cells as they arrive (thread-safe) into the result document."""

    def __init__(self, images: list[ImageRef], models: list[ModelSpec], options: RunOptions) -> None:
        self.images = images
        # Identical files (same content hash) run once; every path still gets its row.
        self.unique = list({img.id: img for img in reversed(images)}.values())[::-1]
        self.models = models
        self.options = options
        self.run_id = _run_id()
        self.log_dir = logs_dir() / self.run_id   # one log per model: <model>.log
        self.cells: dict[str, dict[str, dict[str, Any]]] = {img.id: {} for img in images}
        self.model_runs: dict[str, ModelRun] = {}
        self.lock = threading.Lock()
        self._phrases: list[str] | None = None

    # -- cells ------------------------------------------------------------------------------------
    def add_cell(self, spec: ModelSpec, image: ImageRef, result: dict[str, Any]) -> None:
        if spec.kind == "captioner" and result.get("caption"):
            self._add_caption_tags(result)
        with self.lock:
            self.cells[image.id][spec.name] = result

    def _add_caption_tags(self, result: dict[str, Any]) -> None:
        from orchestrator.captags import extract_tags, load_stopwords

        if self._phrases is None:
            self._phrases = read_vocabulary("urbex", Path("."))
        extracted = extract_tags(result["caption"], self._phrases, load_stopwords())
        have = {t["name"] for t in result.get("tags", [])}
        result["tags"] = list(result.get("tags", [])) + [t for t in extracted if t["name"] not in have]

    # -- running ----------------------------------------------------------------------------------
    def job_for(self, spec: ModelSpec, python: Path, log_dir: Path) -> ModelJob:
        opts = self.options
        timeout = opts.timeout_s or spec.timeout_s or 60.0
        limits = Limits(infer_s=timeout, load_s=spec.load_timeout_s or Limits.load_s,
                        retry_crashed=opts.retry_crashed)
        load_spec = build_load_spec(spec, weights=opts.weights.get(spec.name), offline=opts.offline,
                                    device=opts.device, dtype=opts.dtype, warmup=opts.warmup)
        return ModelJob(spec=spec, python=python, load_spec=load_spec,
                        infer_options={**spec.infer, **self.overrides_for(spec)}, log_path=log_dir / f"{spec.name}.log",
                        limits=limits, batch_size=opts.batch_size, offline=opts.offline)

    def overrides_for(self, spec: ModelSpec) -> dict[str, Any]:
        """--option KEY=V applies to every model, --option MODEL.KEY=V to that model only."""
        out = {k: v for k, v in self.options.infer_overrides.items() if "." not in k}
        prefix = spec.name + "."
        out.update({k[len(prefix):]: v for k, v in self.options.infer_overrides.items() if k.startswith(prefix)})
        return out

    def run_model(self, spec: ModelSpec, progress: Any = None) -> ModelRun:
        state, why = envbuild.env_state(spec.env)
        if state != "ready":
            fix = f"make setup-envs MODELS={spec.name}"
            run = ModelRun(spec.name, status="skipped", message=f"env '{spec.env}' is {state}: {why}", fix=fix)
            for done, image in enumerate(self.unique, 1):
                self.add_cell(spec, image, cell(CellStatus.SKIPPED, run.message, fix=fix))
                if progress:
                    progress(spec.name, done, len(self.unique))
            self.model_runs[spec.name] = run
            return run
        job = self.job_for(spec, envbuild.env_paths(spec.env).python, self.log_dir)
        sup = Supervisor(job, lambda image, result: self.add_cell(spec, image, result), progress)
        try:
            run = sup.run(self.unique)
        except Exception as exc:  # a bug of ours must not cost the other models their results
            run = self._internal_error(spec, exc)
        self.model_runs[spec.name] = run
        return run

    def _internal_error(self, spec: ModelSpec, exc: Exception) -> ModelRun:
        message = f"mltag internal error: {type(exc).__name__}: {exc}"
        error = {"type": type(exc).__name__, "message": str(exc), "traceback": "".join(traceback.format_exception(exc))}
        for image in self.unique:
            if spec.name not in self.cells[image.id]:
                self.add_cell(spec, image, cell(CellStatus.ERROR, message, error=error))
        return ModelRun(spec.name, status="failed", message=message, fix="please report this with the traceback")

    def run(self, progress: Any = None) -> dict[str, Any]:
        started = time.time()
        if self.options.parallel > 1 and len(self.models) > 1:
            with ThreadPoolExecutor(max_workers=self.options.parallel) as pool:
                list(pool.map(lambda s: self.run_model(s, progress), self.models))
        else:
            for spec in self.models:
                self.run_model(spec, progress)
        return self.document(started, time.time())

    # -- output -----------------------------------------------------------------------------------
    def document(self, started: float, finished: float) -> dict[str, Any]:
        opts = self.options
        return {
            "schema_version": SCHEMA_VERSION,
            "mltag_version": __version__,
            "run_id": self.run_id,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "duration_s": round(finished - started, 3),
            "options": {"timeout_s": opts.timeout_s, "device": opts.device, "offline": opts.offline,
                        "warmup": opts.warmup, "batch_size": opts.batch_size, "threshold": opts.threshold,
                        "top": opts.top, "weights": {k: str(v) for k, v in opts.weights.items()},
                        "infer_overrides": opts.infer_overrides},
            "models": [self._model_entry(spec) for spec in self.models],
            "images": [self._image_entry(img, first) for img, first in self._with_first_copy()],
        }

    def _with_first_copy(self) -> list[tuple[ImageRef, ImageRef]]:
        first = {img.id: img for img in self.unique}
        return [(img, first[img.id]) for img in self.images]

    def _image_entry(self, img: ImageRef, first: ImageRef) -> dict[str, Any]:
        missing = cell(CellStatus.SKIPPED, "no result was recorded")
        entry: dict[str, Any] = {
            "path": str(img.path), "sha256": img.sha256, "size_bytes": img.size_bytes,
            "results": {spec.name: self.cells[img.id].get(spec.name) or dict(missing) for spec in self.models}}
        if first is not img:
            entry["duplicate_of"] = str(first.path)
        return entry

    def _model_entry(self, spec: ModelSpec) -> dict[str, Any]:
        run = self.model_runs.get(spec.name) or ModelRun(spec.name, status="skipped", message="not run")
        load = run.load
        return {
            "name": spec.name, "kind": spec.kind, "adapter": spec.adapter, "env": spec.env,
            "hub_id": spec.hub_id, "revision": spec.revision,
            "weights": str(self.options.weights[spec.name]) if spec.name in self.options.weights else None,
            "status": run.status, "message": run.message, "fix": run.fix,
            "device": load.get("device"), "dtype": load.get("dtype"), "model_version": load.get("model_version"),
            "load_s": load.get("load_s"), "warmup_s": load.get("warmup_s"), "memory_mb": load.get("memory_mb"),
            "notes": load.get("notes", []), "reload_s": run.reloads, "crashes": run.crashes,
            "timeouts": run.timeouts, "log": run.log_path or None,
            "runner": {k: run.hello.get(k) for k in ("python", "packages", "devices")} if run.hello else None,
        }


def exit_code(document: dict[str, Any]) -> int:
    ok = {s.value for s in (CellStatus.OK, CellStatus.NO_TAGS)}
    statuses = [c["status"] for img in document["images"] for c in img["results"].values()]
    return 0 if all(s in ok for s in statuses) else 1

