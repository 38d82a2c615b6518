"""Every runner this process started: launched ahead (its imports and weights load while the caller
works on), retired in the background when asked to exit, and all killed at exit or on Ctrl-C."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from orchestrator.run.jobs import ModelJob
from orchestrator.run.processes import RunnerProcess
from orchestrator.run.runner import PipelinedRunner, Runner

_LIVE: set[Runner] = set()
_EXITING: list[threading.Thread] = []  # reapers of runners that were asked to exit
_LIVE_LOCK = threading.Lock()


def kill_all_runners() -> None:
    """Stop every runner this process started (Ctrl-C, atexit): no orphan survives."""
    with _LIVE_LOCK:
        runners = list(_LIVE)
    for runner in runners:
        runner.kill(grace=1.0)


def retire(runner: PipelinedRunner) -> None:
    """A runner that agreed to exit frees its model (a second or more for a big one) while the
    orchestrator goes on; a thread reaps it, with the kill ladder if it does not exit."""

    def reap() -> None:
        runner.finish()
        forget(runner)

    thread = threading.Thread(target=reap, name=f"reap-runner-{runner.pid}", daemon=True)
    with _LIVE_LOCK:
        _EXITING.append(thread)
    thread.start()


def forget(runner: Runner) -> None:
    """A runner that is gone (killed, or stopped here and now): no longer one to kill at exit."""
    with _LIVE_LOCK:
        _LIVE.discard(runner)


def wait_for_exits() -> None:
    """Wait until every runner asked to exit is gone: before a model loads (the memory it needs is
    free) and before the command ends (no runner outlives it)."""
    with _LIVE_LOCK:
        threads = list(_EXITING)
    for thread in threads:
        thread.join()
    with _LIVE_LOCK:
        _EXITING[:] = [t for t in _EXITING if t.is_alive()]


@dataclass
class Launch:
    """A started runner whose hello and load were asked and not yet answered."""

    runner: PipelinedRunner
    hello_id: int
    load_id: int
    started: float  # time.monotonic() at the start

    def cancel(self) -> None:
        """Never used (every image was done already): the runner is stopped."""
        self.runner.kill()
        forget(self.runner)


def launch(job: ModelJob, first: bool = True, decode_ahead: bool = True) -> Launch:
    """Start the job's runner and queue its hello and load without waiting: the runner imports its
    libraries and loads the weights while the caller does other work. `first`: the model's first
    start (only that one runs the warm-up). `decode_ahead`: the photos sent during the load are
    decoded meanwhile (runners/_decode_ahead.py). OSError when the env's python cannot be started."""
    wait_for_exits()
    started = time.monotonic()
    runner = (job.start or RunnerProcess.start)(
        job.python,
        job.adapter or job.spec.adapter,
        job.log_path,
        offline=job.offline,
        module=job.runner_module,
        extra_env=job.extra_env,
    )
    with _LIVE_LOCK:
        _LIVE.add(runner)
    load_spec = dict(job.load_spec, warmup=bool(job.load_spec.get("warmup")) and first)
    hello_id = runner.request("hello")
    load_id = runner.request("load", spec=load_spec, infer_options=job.infer_options, decode_ahead=decode_ahead)
    return Launch(runner, hello_id, load_id, started)
