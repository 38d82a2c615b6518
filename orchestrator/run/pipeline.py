"""One analysis: images x models -> cells in the results store (outputs read them back from there:
orchestrator/store/documents.py). What each model's runner is given: jobs.py.

Model-major: each selected model's runner streams through every image, so a model loads once.
Models run one after another by default (2-core machines, multi-GB models); --parallel N runs
N at once. A model whose env is missing, or that fails, never stops the others.

Just over 350 lines on purpose: `Analysis` is the one place that decides, per model, what the store
already has, what runs, and what is stored; orchestrator/cluster subclasses it (two hooks).
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from orchestrator.document import Header, KeptFailure, ModelEntry, Results, header
from orchestrator.images import ImageRef
from orchestrator.models import envbuild
from orchestrator.models.registry import ModelSpec
from orchestrator.paths import logs_dir
from orchestrator.run.jobs import ModelJob, RunOptions, model_job
from orchestrator.run.launch import Launch, launch, wait_for_exits
from orchestrator.run.supervisor import ModelRun, Supervisor, cell
from orchestrator.store import CellMeta, ResultStore, StoreError, StoreWriteError, options_key
from orchestrator.store.documents import from_run, stored_cells
from schemas.status import SUCCESS, CellStatus

_RUNS = itertools.count()
# A run's failed cells that the store did not take (it keeps the photo's earlier done cell) are listed
# in the document (`failures_kept`) up to this many; the count goes on past it (memory stays bounded).
KEPT_LISTED = 1000


def _run_id() -> str:
    # The counter keeps two analyses of one process apart (run ids key the store's rows).
    return time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}-{next(_RUNS)}"


def _store_failed(store: ResultStore, exc: Exception) -> StoreWriteError:
    reason = exc.__cause__ if isinstance(exc, StoreError) and exc.__cause__ else exc  # sqlite's own words
    return StoreWriteError(
        f"writing to the results store {store.path} failed ({reason}): free some disk space "
        "there, or pass --store OTHER_PATH; every result stored before this one is kept, and the "
        "same command resumes from them"
    )


class Analysis:
    """Runs models over images; every cell goes to the results store the moment it arrives, and the
    outputs read it back from there (orchestrator/store/documents.py): nothing per image is held here but
    the list of files. Without a store (--no-store) a temporary one is used and removed by close()."""

    def __init__(
        self,
        images: list[ImageRef],
        models: list[ModelSpec],
        options: RunOptions,
        judge: ModelSpec | None = None,
        store: ResultStore | None = None,
        force: bool = False,
        judged_models: dict[str, str] | None = None,
    ) -> None:
        self.set_images(images)
        self.models = models
        self.judge = judge  # runs after the models, on their outputs (orchestrator/run/judge.py)
        # whose stored outputs the judge merges (model -> kind); default: this analysis's models
        self.judged_models = judged_models if judged_models is not None else {m.name: m.kind for m in models}
        self.options = options
        # runners computing at once: --parallel N over the models (each gets its share of the cores); the
        # judge runs alone after them (run_judge)
        self.at_once = max(1, min(options.parallel, len(models)))
        self.run_id = _run_id()
        self.log_dir = logs_dir() / self.run_id  # one log per model: <model>.log
        self.model_runs: dict[str, ModelRun] = {}
        self.lock = threading.Lock()
        self._temp: tempfile.TemporaryDirectory[str] | None = None
        if store is None:  # --no-store: a private store that nothing reads again
            self._temp = tempfile.TemporaryDirectory(prefix="mltag-run-")
            store = ResultStore(Path(self._temp.name) / "results.sqlite")
        self.store = store
        self.force = force or self._temp is not None  # redo cells the store already has
        self.reused: dict[str, int] = {}  # model -> cells taken from the store, not run
        self.counts: dict[str, Counter[str]] = {}  # model -> status -> cells (this run's and reused)
        self.started = self.finished = time.time()
        self._meta: dict[str, CellMeta] = {}  # model -> the columns stored beside its cells
        self._entry_stored: set[str] = set()
        self._launched: dict[str, Launch] = {}  # model -> its runner, started early (start_early)
        self.failed_now = 0  # this run's cells that are not ok / no_tags
        # this run's failures that the store did not take: it kept the photo's earlier done cell, so
        # the outputs show that one (ok) while the run exits 1; the first KEPT_LISTED, and their count
        self.failures_kept: list[KeptFailure] = []
        self.kept_count = 0

    def set_images(self, images: list[ImageRef]) -> None:
        """The images to analyse (given after start_early, once they are hashed)."""
        self.images = images
        # Identical files (same content hash) run once; every path still gets its row.
        self.unique = list({img.id: img for img in reversed(images)}.values())[::-1]

    def start_early(self) -> None:
        """Start the first model's runner before the images are known: its libraries and weights
        load while the files are hashed (seconds for a folder of camera photos). Only when it
        will run whatever the images: its env is ready and the store has none of its results
        with these options to reuse (never, with --no-store or --force)."""
        if not self.models or self.models[0].name in self._launched:
            return
        spec = self.models[0]
        if envbuild.env_state(spec.env)[0] != "ready":
            return
        meta = self._cell_meta(spec)
        try:
            if not self.force and meta.options_key and self.store.has_done(spec.name, meta.options_key):
                return
            job = self._job(spec)
            self._launched[spec.name] = launch(job)
        except (StoreError, OSError):
            return  # the model starts when its turn comes, and says what is wrong then

    def _cancel_launch(self, spec: ModelSpec) -> None:
        """The runner started early for `spec` is not needed after all: stopped now, not at close()."""
        launched = self._launched.pop(spec.name, None)
        if launched is not None:
            launched.cancel()

    def close(self) -> None:
        """Close the store (and remove it, when it was a temporary one), once every runner has exited."""
        for launched in self._launched.values():
            launched.cancel()
        self._launched.clear()
        wait_for_exits()
        self.store.close()
        if self._temp is not None:
            self._temp.cleanup()

    # -- cells ------------------------------------------------------------------------------------
    def add_cell(self, spec: ModelSpec, image: ImageRef, result: dict[str, Any], run: ModelRun | None = None) -> None:
        """Store a cell as the runner gave it; a store that cannot be written stops the run (StoreError)."""
        stored = self._store_cell(spec, image, result, run)
        status = str(result.get("status"))
        self._count(spec.name, status)
        if status in SUCCESS:
            return
        with self.lock:
            self.failed_now += 1
            if not stored:  # an earlier done cell was kept: say what failed, since the outputs show it ok
                self.kept_count += 1
                if len(self.failures_kept) < KEPT_LISTED:
                    self.failures_kept.append(
                        {
                            "model": spec.name,
                            "path": image.name,
                            "sha256": image.sha256,
                            "status": status,
                            "message": str(result.get("message") or ""),
                        }
                    )

    def _count(self, model: str, status: str, n: int = 1) -> None:
        with self.lock:
            self.counts.setdefault(model, Counter())[status] += n

    # -- the results store ------------------------------------------------------------------------
    def _store_call(self, write: Any, *args: Any) -> Any:
        try:
            return write(*args)
        except (StoreError, OSError) as exc:
            raise _store_failed(self.store, exc) from exc

    def _store_cell(self, spec: ModelSpec, image: ImageRef, result: dict[str, Any], run: ModelRun | None) -> bool:
        """Store the cell; False when the store kept the photo's earlier done cell instead."""
        with self.lock:
            first = spec.name not in self._entry_stored
            self._entry_stored.add(spec.name)
        if first:  # a kill -9 from here on still leaves the model's timings beside its cells
            entry: ModelEntry = {
                **self._model_entry(spec, run),
                "message": "the run stopped before this model finished",
            }
            self._store_call(self.store.put_model, self.run_id, spec.name, entry)
        load = run.load if run is not None else {}
        meta = self._meta.get(spec.name) or CellMeta(options_key="", kind=spec.kind, revision=spec.revision)
        meta = replace(
            meta,
            model_version=load.get("model_version"),
            device=load.get("device"),
            load_s=load.get("load_s"),
            warmup_s=load.get("warmup_s"),
        )
        return bool(self._store_call(self.store.put_cell, self.run_id, image.sha256, spec.name, result, meta))

    def _job(self, spec: ModelSpec) -> ModelJob:
        return model_job(self.options, spec, envbuild.env_paths(spec.env).python, self.log_dir, at_once=self.at_once)

    def _store_model(self, spec: ModelSpec) -> None:
        if spec.name in self.model_runs and self.reused.get(spec.name, 0) < len(self.unique):
            self._store_call(self.store.put_model, self.run_id, spec.name, self._model_entry(spec))

    def _cell_meta(self, spec: ModelSpec) -> CellMeta:
        """The options key (resume) and env key of a model, from the very job it will run."""
        try:
            job = self._job(spec)
            key = options_key(spec.adapter, job.load_spec, job.infer_options)
        except Exception:  # e.g. a missing vocabulary: the model fails later with that message; no resume
            key = ""
        try:
            env = envbuild.env_key(envbuild.env_paths(spec.env))
        except Exception:
            env = None
        return CellMeta(options_key=key, kind=spec.kind, revision=spec.revision, env_key=env)

    def _reuse_stored(self, spec: ModelSpec, progress: Any) -> list[ImageRef]:
        """Count the cells the store already has done (same options key); return the images left to run.

        The judge is never reused: its input is the other models' outputs, which may have changed."""
        meta = self._meta[spec.name] = self._cell_meta(spec)
        if self.force or not meta.options_key or spec.kind == "judge":
            return list(self.unique)
        try:
            done = self.store.done_statuses(spec.name, meta.options_key, (img.id for img in self.unique))
        except StoreError as exc:
            raise StoreError(
                f"reading the results store {self.store.path} failed ({exc}): pass --store OTHER_PATH, or --no-store"
            ) from exc
        for status, n in Counter(done.values()).items():
            self._count(spec.name, status, n)
        self.reused[spec.name] = len(done)
        if done and progress:
            progress(spec.name, len(done), len(self.unique))
        return [img for img in self.unique if img.id not in done]

    def _stored_run(self, spec: ModelSpec) -> ModelRun:
        """A model whose every cell came from the store: its run as the store recorded it."""
        try:
            entry = self.store.model_entry(spec.name) or {}
        except StoreError:
            entry = {}
        load = {k: entry.get(k) for k in ("device", "dtype", "model_version", "load_s", "warmup_s", "memory_mb")}
        return ModelRun(
            spec.name,
            status=entry.get("status", "ok"),
            fix=entry.get("fix", ""),
            message=f"all {len(self.unique)} result(s) from the store (same revision and options; "
            "--force recomputes them)",
            hello=entry.get("runner") or {},
            load=dict(load, notes=entry.get("notes", [])),
            reloads=entry.get("reload_s", []),
            crashes=entry.get("crashes", 0),
            timeouts=entry.get("timeouts", 0),
            log_path=entry.get("log") or "",
        )

    def _begin_run(self) -> None:
        """Record the run and every image path in the store, before the first cell."""
        self.started = time.time()
        self._store_call(self.store.begin_run, self.run_id, self.started, self.options_entry(), sys.argv[1:])
        self._store_call(self.store.record_images, self.run_id, self.images)

    def close_run(self, status: str = "finished") -> None:
        """Record the run's end in the store (finished, or interrupted). Each model's entry is stored
        as it finishes (run_model); one interrupted keeps the entry its first cell stored."""
        self.finished = time.time()
        try:
            self.store.finish_run(self.run_id, self.finished, status)
        except StoreError:
            pass  # the run's cells are stored; only its end time is missing (as after a kill -9)

    # -- running ----------------------------------------------------------------------------------
    def run_model(
        self, spec: ModelSpec, progress: Any = None, payload: Callable[[ImageRef], dict[str, Any]] | None = None
    ) -> ModelRun:
        """Run one model over the images the store has not done; `payload`: what each image sends
        instead of its file (the judge's context). A file that could not be read is its own
        `bad_image` cell and never reaches the runner."""
        pending = self._reuse_stored(spec, progress)
        for image in (img for img in pending if img.error):
            self.add_cell(
                spec,
                image,
                cell(CellStatus.BAD_IMAGE, image.error or "", fix="check the file, then run the same command again"),
            )
        pending = [img for img in pending if not img.error]
        reused = len(self.unique) - len(pending)
        if self.unique and not pending:  # every cell done already: the runner is not even started
            self._cancel_launch(spec)
            run = self.model_runs[spec.name] = self._stored_run(spec)
            return run
        if reused and progress:  # count the stored cells in the model's progress
            inner = progress

            def progress(model: str, done: int, total: int) -> None:
                inner(model, done + reused, total + reused)

        state, why = self._env_state(spec)
        if state != "ready":
            self._cancel_launch(spec)
            fix = envbuild.setup_fix(spec.name)
            run = ModelRun(spec.name, status="skipped", message=f"env '{spec.env}' is {state}: {why}", fix=fix)
            for done, image in enumerate(pending, 1):
                self.add_cell(spec, image, cell(CellStatus.SKIPPED, run.message, fix=fix))
                if progress:
                    progress(spec.name, done, len(pending))
            self.model_runs[spec.name] = run
            self._store_model(spec)
            return run
        job = self._job(spec)
        job.payload = payload
        try:
            run = self._supervise(spec, job, pending, progress)
        except StoreError:
            raise  # the store cannot be written: the whole run stops (see _store_failed)
        except Exception as exc:  # a bug of ours must not cost the other models their results
            run = self._internal_error(spec, exc, pending)
        if reused and not run.message:
            run.message = f"{reused} of {len(self.unique)} result(s) from the store (same revision and options)"
        self.model_runs[spec.name] = run
        self._store_model(spec)
        return run

    def _env_state(self, spec: ModelSpec) -> tuple[str, str]:
        """Whether the model's env can run it here (orchestrator.cluster asks its nodes instead)."""
        return envbuild.env_state(spec.env)

    def _supervise(self, spec: ModelSpec, job: ModelJob, pending: list[ImageRef], progress: Any) -> ModelRun:
        """One runner through the images (orchestrator.cluster runs a pool of them on its nodes)."""
        sup = Supervisor(
            job,
            lambda image, result: self.add_cell(spec, image, result, sup.run_info),
            progress,
            launched=self._launched.pop(spec.name, None),
        )  # the runner start_early started
        return sup.run(pending)

    def _internal_error(self, spec: ModelSpec, exc: Exception, pending: list[ImageRef]) -> ModelRun:
        message = f"mltag internal error: {type(exc).__name__}: {exc}"
        error = {"type": type(exc).__name__, "message": str(exc), "traceback": "".join(traceback.format_exception(exc))}
        stored = self.store.run_cells(self.run_id, spec.name)
        for image in pending:
            if image.id not in stored:
                self.add_cell(spec, image, cell(CellStatus.ERROR, message, error=error))
        return ModelRun(spec.name, status="failed", message=message, fix="please report this with the traceback")

    def run(self, progress: Any = None) -> Results:
        """Every model, then the judge; the results as the store now holds them."""
        self._begin_run()
        if self.options.parallel > 1 and len(self.models) > 1:
            with ThreadPoolExecutor(max_workers=self.options.parallel) as pool:
                list(pool.map(lambda s: self.run_model(s, progress), self.models))
        else:
            for spec in self.models:
                self.run_model(spec, progress)
        if self.judge is not None:
            self.run_judge(progress)
        self.close_run()
        return self.results()

    def run_judge(self, progress: Any = None, contexts: dict[str, dict[str, Any]] | None = None) -> ModelRun:
        """The judge merges each image's model outputs (read from the store): their text, and the photo
        too when the judge is a captioner (run/judge.vision_judge).

        `contexts` (image id -> judge input) replaces the one built from the stored cells
        (`mltag health --deep` feeds a known one)."""
        from orchestrator.run.judge import judge_context, sees_image

        assert self.judge is not None
        self.at_once = 1
        kinds = self.judged_models
        photo = sees_image(self.judge)  # a captioner judging is sent the photo too

        def payload(image: ImageRef) -> dict[str, Any]:
            if contexts is not None:
                context = contexts[image.id]
            else:
                context = judge_context(stored_cells(self.store, image.id, kinds), kinds)
            if not photo:
                return {"context": context}
            try:
                return {"context": context, "data": image.read()}
            except OSError:  # moved or unreadable since it was analysed: the judge's cell says so
                return {"context": context}

        return self.run_model(self.judge, progress, payload=payload)

    def exit_code(self) -> int:
        """0 when every model (and the judge) has an ok or no_tags cell for every image, else 1."""
        good = 0
        for spec in self.reported_models:
            counts = self.counts.get(spec.name, Counter())
            good += counts[CellStatus.OK.value] + counts[CellStatus.NO_TAGS.value]
        return 0 if good == len(self.unique) * len(self.reported_models) else 1

    # -- output -----------------------------------------------------------------------------------
    @property
    def reported_models(self) -> list[ModelSpec]:
        """The models, then the judge (its column is a synthesis of theirs)."""
        return self.models + ([self.judge] if self.judge is not None else [])

    def options_entry(self) -> dict[str, Any]:
        opts = self.options
        return {
            "timeout_s": opts.timeout_s,
            "device": opts.device,
            "offline": opts.offline,
            "warmup": opts.warmup,
            "batch_size": opts.batch_size,
            "threshold": opts.threshold,
            "top": opts.top,
            "weights": {k: str(v) for k, v in opts.weights.items()},
            "infer_overrides": opts.infer_overrides,
            "prompt": opts.prompt,
            "tags_prompt": opts.tags_prompt,
            "ask": opts.ask,
            "quantize": opts.quantize,
            "judge": self.judge.name if self.judge else None,
        }

    def results(self) -> Results:
        """This run's document: its images in the order found, each with the cells the store holds."""
        head: Header = {
            **header(self.run_id, self.started, self.finished, self.options_entry()),
            "failures_kept": list(self.failures_kept),
        }
        return from_run(head, [self._model_entry(spec) for spec in self.reported_models], self.images, self.store)

    def _model_entry(self, spec: ModelSpec, run: ModelRun | None = None) -> ModelEntry:
        run = run or self.model_runs.get(spec.name) or ModelRun(spec.name, status="skipped", message="not run")
        load = run.load
        return {
            "name": spec.name,
            "kind": spec.kind,
            "adapter": spec.adapter,
            "env": spec.env,
            "hub_id": spec.hub_id,
            "revision": spec.revision,
            "remote_code": spec.remote_code,
            "weights": str(self.options.weights[spec.name]) if spec.name in self.options.weights else None,
            "status": run.status,
            "message": run.message,
            "fix": run.fix,
            "device": load.get("device"),
            "dtype": load.get("dtype"),
            "model_version": load.get("model_version"),
            "load_s": load.get("load_s"),
            "warmup_s": load.get("warmup_s"),
            "memory_mb": load.get("memory_mb"),
            "notes": load.get("notes", []),
            "reload_s": run.reloads,
            "crashes": run.crashes,
            "timeouts": run.timeouts,
            "log": run.log_path or None,
            "runner": {k: run.hello.get(k) for k in ("python", "packages", "devices")} if run.hello else None,
        }
