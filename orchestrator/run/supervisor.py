"""Drive one model's runner through all images, whatever the runner does.

Per model (model-major: the model loads once per run): start -> hello -> load (-> warm-up)
-> infer each batch -> shutdown. Every request has a deadline. On timeout the runner's process
group gets SIGTERM, then SIGKILL after a grace period; the cell is `timeout` and a fresh runner
takes the next image (its reload time is recorded). On a crash the images in flight are
`crashed` with the exit signal and the runner log's tail; an image that crashed the runner is
retried once on a fresh runner, and an image that kills it twice is not retried (poison).
Restarts are bounded: after `max_restarts` failures in a row without one success, the model's
remaining cells are `skipped` with the reason. `run()` always returns.

Nothing waits on the orchestrator: the next batch is sent while the runner computes the current
one (it waits in the runner, read), so the runner goes on to it the moment it replies, while the
orchestrator stores the reply; a runner can be started ahead (run/launch.py: its imports and
weights load while the files are hashed); and a runner asked to exit frees its model in the
background, waited for before the next runner starts and before the command ends.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import RemoteError, RunnerCrashed, RunnerError, RunnerTimeout
from orchestrator.images import ImageRef
from orchestrator.models.envbuild import setup_fix
from orchestrator.models.loadspec import weights_kinds
from orchestrator.run.jobs import ModelJob
from orchestrator.run.launch import Launch, forget, launch, retire
from orchestrator.run.runner import PipelinedRunner
from schemas.protocol import ERROR_WEIGHTS_MISSING
from schemas.status import CellStatus

CellSink = Callable[[ImageRef, dict[str, Any]], None]

AHEAD = 1  # batches sent to the runner beyond the one it computes (each holds its files' bytes)
# Photos sent while a runner loads (at least AHEAD + 1 batches): it decodes them meanwhile, on a
# core the load leaves idle (runners/_decode_ahead.py). Bounded: their files' bytes wait there.
LOADING_AHEAD = 8


@dataclass
class ModelRun:
    """What happened to one model over the run (for the report's model table)."""

    name: str
    status: str = "ok"  # ok | failed | skipped
    message: str = ""
    fix: str = ""
    hello: dict[str, Any] = field(default_factory=dict)
    load: dict[str, Any] = field(default_factory=dict)
    reloads: list[float] = field(default_factory=list)
    crashes: int = 0
    timeouts: int = 0
    log_path: str = ""


@dataclass
class _Sent:
    """A batch sent to the runner, its reply not read yet."""

    images: list[ImageRef]
    req_id: int


MESSAGE_CHARS = 300  # a runner's error as the user sees it: one line, at most this long


def one_line(text: str, log: str, limit: int = MESSAGE_CHARS) -> str:
    """A runner's error text as one bounded line: a library's message can run to hundreds of lines (a
    list of every model type it knows); the whole text is in the runner log and the cell's `error`."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    first = lines[0] if lines else text.strip()
    if len(lines) <= 1 and len(first) <= limit:
        return first
    if len(first) > limit:
        first = first[:limit].rstrip() + "..."
    return f"{first} (full text in {log})"


def cell(status: CellStatus, message: str = "", fix: str = "", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"status": status.value, "message": message}
    if fix:
        out["fix"] = fix
    out.update(extra)
    return out


class Supervisor:
    def __init__(
        self,
        job: ModelJob,
        sink: CellSink,
        progress: Callable[[str, int, int], None] | None = None,
        launched: Launch | None = None,
    ) -> None:
        self.job = job
        self.sink = sink
        self.progress = progress or (lambda model, done, total: None)
        self.run_info = ModelRun(job.spec.name, log_path=str(job.log_path))
        self.runner: PipelinedRunner | None = None
        self.launched = launched  # a runner started ahead for this job (launch)
        self.failures_in_a_row = 0
        self.crashes_of: dict[str, list[dict[str, Any]]] = {}
        self.give_up: dict[str, Any] | None = None  # the cell every remaining image gets
        self.solo: set[str] = set()  # images isolated after a batch crashed
        # Until a runner of this job fails: after a crash or a timeout, no photo is decoded during
        # a load, so that a photo that kills its decoder is found by its own infer (isolated).
        self.decode_ahead = True
        self.done = 0

    # -- public ---------------------------------------------------------------------------------
    def run(self, images: list[ImageRef]) -> ModelRun:
        pending: deque[ImageRef] = deque(images)
        sent: deque[_Sent] = deque()  # in the runner, oldest first; empty whenever there is no runner
        total = len(images)
        try:
            while True:
                self._refill(pending)
                if not (pending or sent):
                    break
                if self.give_up is not None:
                    self._emit(pending.popleft(), dict(self.give_up), total)
                    continue
                if self.runner is None:
                    if (started := self._start()) is None:
                        continue
                    self._fill(pending, sent, total, loading=self.decode_ahead)  # decoded during the load
                    if not self._started(started, sent, pending):
                        continue
                self._fill(pending, sent, total)
                if sent:
                    for image, result in self._collect(sent, pending):
                        self._emit(image, result, total)
        except BaseException:  # Ctrl-C, SIGTERM: no polite shutdown, the runner dies now
            self._discard_runner()
            raise
        finally:
            if self.launched is not None:  # never needed: every image was given up on
                self.launched.cancel()
            self._stop()
        self._summarise()
        return self.run_info

    def _refill(self, pending: deque[ImageRef]) -> None:
        """A hook: more images for `pending` as they are needed (a cluster pool's replica takes them
        from its model's one queue, orchestrator/cluster/pool.py), so the next batch is sent ahead
        across what would otherwise be chunk boundaries."""

    def _next_batch(self, pending: deque[ImageRef]) -> list[ImageRef]:
        """Up to batch_size images; an image from a crashed batch travels alone."""
        batch = [pending.popleft()]
        while pending and len(batch) < self.job.batch_size and not ({batch[0].id, pending[0].id} & self.solo):
            batch.append(pending.popleft())
        return batch

    # -- runner life cycle ----------------------------------------------------------------------
    def _start(self) -> Launch | None:
        """A runner for the job (the one launched ahead, else a new one), hello and load asked; None
        when it cannot even start."""
        launched, self.launched = self.launched, None
        if launched is None:
            try:
                launched = launch(self.job, first=not self.run_info.load, decode_ahead=self.decode_ahead)
            except OSError as exc:  # the env's python is gone or not executable: no point retrying
                self.give_up = cell(
                    CellStatus.SKIPPED,
                    f"cannot start the runner: {exc}",
                    fix=setup_fix(self.job.spec.name),
                )
                return None
        self.runner = launched.runner
        return launched

    def _started(self, launched: Launch, sent: deque[_Sent], pending: deque[ImageRef]) -> bool:
        """Wait for the runner's hello and load; when they fail, the batches sent meanwhile go back
        to `pending` with the runner gone."""
        assert self.runner is not None
        limits = self.job.limits
        try:
            hello = self.runner.reply(launched.hello_id, limits.hello_s)
            load = self.runner.reply(launched.load_id, limits.load_s)
        except RunnerError as exc:
            self._requeue(sent, pending)
            self._discard_runner()
            if isinstance(exc, RemoteError):
                self._fail_model(exc)
            else:
                self._count_failure(f"runner failed to start: {exc}", getattr(exc, "stderr_tail", ""))
            return False
        if not self.run_info.load:
            self.run_info.hello, self.run_info.load = hello, load
        else:
            self.run_info.reloads.append(time.monotonic() - launched.started)
        return True

    def _fill(self, pending: deque[ImageRef], sent: deque[_Sent], total: int, loading: bool = False) -> None:
        """Send batches until AHEAD of them wait behind the one the runner computes; `loading`:
        until LOADING_AHEAD photos wait for the runner that loads."""
        while len(sent) <= AHEAD or (loading and sum(len(s.images) for s in sent) < LOADING_AHEAD):
            self._refill(pending)
            if not pending:
                break
            for image, result in self._send(pending, sent):
                self._emit(image, result, total)

    def _discard_runner(self) -> None:
        if self.runner is not None:
            self.runner.kill()
            forget(self.runner)
            self.runner = None

    def _stop(self) -> None:
        if self.runner is not None:
            if self.runner.shutdown():
                retire(self.runner)  # it exits while the orchestrator goes on (wait_for_exits)
                self.runner = None
            else:
                self._discard_runner()

    def _fail_model(self, exc: RemoteError) -> None:
        """A deterministic failure while loading (missing weights, import error): no retry."""
        spec, log = self.job.spec, str(self.job.log_path)
        message = one_line(exc.message, log)
        local = self.job.load_spec.get("local_path")
        if exc.type == ERROR_WEIGHTS_MISSING:
            fix = (
                f"--weights {spec.name}=PATH takes {weights_kinds(spec.hub_id, spec.revision)}"
                if local
                else f"mltag run {spec.name} ... without --offline to download them, or pass "
                f"--weights {spec.name}=/path/to/local/model"
            )
            self.give_up = cell(CellStatus.SKIPPED, f"weights missing: {message}", fix=fix)
        else:
            if local:
                message += f" (from --weights {local})"
            self.give_up = cell(
                CellStatus.ERROR,
                f"model failed to load: {exc.type}: {message}",
                fix=f"see the traceback in {self.job.log_path}; `mltag health {spec.name} --deep`",
                error={"type": exc.type, "message": exc.message, "traceback": exc.traceback},
            )

    def _count_failure(self, message: str, stderr_tail: str = "") -> None:
        self.failures_in_a_row += 1
        self.decode_ahead = False
        if self.failures_in_a_row > self.job.limits.max_restarts:
            detail = "\n" + stderr_tail if stderr_tail else ""
            self.give_up = cell(
                CellStatus.SKIPPED,
                f"restart budget spent: the runner failed {self.failures_in_a_row} times in a row "
                f"(last: {message}){detail}",
                fix=f"look at {self.job.log_path}; `mltag run {self.job.spec.name} <image> -v` shows the runner live",
            )

    # -- inference --------------------------------------------------------------------------------
    def _send(self, pending: deque[ImageRef], sent: deque[_Sent]) -> list[tuple[ImageRef, dict[str, Any]]]:
        """Send the next batch without waiting for its reply; the cells of files that cannot be read."""
        assert self.runner is not None
        payload, ready, out = [], [], []
        for image in self._next_batch(pending):
            try:
                extra = self.job.payload(image) if self.job.payload else {"data": image.read()}
                payload.append({"id": image.id, "name": image.name, **extra})
                ready.append(image)
            except OSError as exc:  # gone or unreadable since it was found: not done, so a re-run tries again
                out.append(
                    (
                        image,
                        cell(
                            CellStatus.SKIPPED,
                            f"the file could not be read when its turn came: {exc.strerror or exc}",
                            fix="check that the file is there and readable, then run the same "
                            "command again (done results are kept)",
                        ),
                    )
                )
        if payload:
            sent.append(_Sent(ready, self.runner.request("infer", images=payload, options=self.job.infer_options)))
        return out

    def _collect(self, sent: deque[_Sent], pending: deque[ImageRef]) -> list[tuple[ImageRef, dict[str, Any]]]:
        """The cells of the oldest batch sent. Its time limit counts from now: the runner has just
        finished the batch before it. When the runner fails, the batches behind it go back to
        `pending` (they never started)."""
        assert self.runner is not None
        batch = sent[0].images
        timeout = self.job.limits.infer_s * len(batch)
        try:
            reply = self.runner.reply(sent.popleft().req_id, timeout)
        except RunnerTimeout:
            self._requeue(sent, pending)
            self._discard_runner()
            self.run_info.timeouts += 1
            self._count_failure(f"no result within {timeout:g} s")
            msg = (
                f"no result within {self.job.limits.infer_s:g} s per image; the runner was killed "
                "and restarted for the next image"
            )
            fix = f"raise --timeout, or timeout_s in envs/{self.job.spec.name}/model.toml"
            return [(img, cell(CellStatus.TIMEOUT, msg, fix=fix)) for img in batch]
        except RunnerCrashed as exc:
            self._requeue(sent, pending)
            self._discard_runner()
            self.run_info.crashes += 1
            self._count_failure(str(exc), exc.stderr_tail)
            return self._crashed(batch, exc, pending)
        except RemoteError as exc:  # the host itself refused the request: not this image's fault alone
            text = f"{exc.type}: {one_line(exc.message, str(self.job.log_path))}"
            return [
                (
                    img,
                    cell(
                        CellStatus.ERROR,
                        text,
                        error={"type": exc.type, "message": exc.message, "traceback": exc.traceback},
                    ),
                )
                for img in batch
            ]
        self.failures_in_a_row = 0  # a start counts only once the runner has done real work
        by_id = {r.get("id"): r for r in reply.get("results", [])}
        out = []
        for img in batch:
            result = by_id.get(img.id)
            if result is None:
                out.append((img, cell(CellStatus.ERROR, "the runner returned no result for this image")))
                continue
            result = dict(result)
            result.pop("id", None)
            if result.get("error") and isinstance(result.get("message"), str):  # the whole text stays in `error`
                result["message"] = one_line(result["message"], str(self.job.log_path))
            if result.get("status") != CellStatus.BAD_IMAGE.value:  # never in the model's batch (schema: >= 1)
                result["batch_size"] = reply.get("batch_size", len(batch))
            out.append((img, result))
        return out

    @staticmethod
    def _requeue(sent: deque[_Sent], pending: deque[ImageRef]) -> None:
        """Batches sent but never started go back to the front of `pending`, in their order."""
        while sent:
            pending.extendleft(reversed(sent.pop().images))

    def _crashed(
        self, sent: list[ImageRef], exc: RunnerCrashed, pending: deque[ImageRef]
    ) -> list[tuple[ImageRef, dict[str, Any]]]:
        msg = f"{exc} (while this image was in flight)"
        detail = {"stderr_tail": exc.stderr_tail} if exc.stderr_tail else {}
        fix = f"see {self.job.log_path}"
        out: list[tuple[ImageRef, dict[str, Any]]] = []
        if len(sent) > 1:  # which image was it? retry each alone
            for img in reversed(sent):
                self.solo.add(img.id)
                pending.appendleft(img)
            return out
        img = sent[0]
        crash = cell(CellStatus.CRASHED, msg, fix=fix, **detail)
        history = self.crashes_of.setdefault(img.id, [])
        history.append(crash)
        if len(history) == 1 and self.job.limits.retry_crashed and self.give_up is None:
            pending.append(img)  # once more, on a fresh runner, after the others
            return out
        if len(history) > 1:
            crash["message"] = msg + "; it crashed the runner twice and is not retried"
        return [(img, crash)]

    # -- bookkeeping ------------------------------------------------------------------------------
    def _emit(self, image: ImageRef, result: dict[str, Any], total: int) -> None:
        earlier = [h for h in self.crashes_of.get(image.id, []) if h is not result]
        if earlier:  # the crashes before this final result
            result["attempts"] = [dict(h, attempt=i + 1) for i, h in enumerate(earlier)]
            if result.get("status") == CellStatus.OK.value and not result.get("message"):
                result["message"] = f"succeeded on attempt {len(earlier) + 1} after a crash"
        self.sink(image, result)
        self.done += 1
        self.progress(self.job.spec.name, self.done, total)

    def _summarise(self) -> None:
        info = self.run_info
        if self.give_up is not None:
            info.status = "skipped" if self.give_up["status"] == CellStatus.SKIPPED.value else "failed"
            info.message = self.give_up["message"].splitlines()[0]
            info.fix = self.give_up.get("fix", "")
