"""What runs ON a cluster node, inside a Ray worker of the driver env (Ray + msgpack + mltag).

No model library is ever imported here: the model runs in the runner subprocess, from this
node's own model venv (built by the same env builder as on one machine, keyed by the same hash).
Errors cross back to the driver as tagged tuples, so that it raises the very RunnerError the
supervisor knows (a Ray exception wrapper would hide which one it was).
"""

from __future__ import annotations

import os
import platform
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.errors import EnvBuildError, ProtocolViolation, RemoteError, RunnerCrashed, RunnerTimeout
from orchestrator.models import envbuild
from orchestrator.paths import PROJECT_ROOT, logs_dir
from orchestrator.run.processes import RunnerProcess
from orchestrator.run.runner import KILL_GRACE_S

Reply = tuple[Any, ...]


def node_label() -> str:
    return f"{socket.gethostname()} ({_ip()})"


def _ip() -> str:
    try:
        import ray

        return str(ray.util.get_node_ip_address())
    except Exception:  # outside a Ray worker (tests of this module): the host name says enough
        return platform.node()


def env_on_node(env: str, want: str | None) -> tuple[str, str, str | None]:
    """(state, why, key) of `env` here; a current env built from another lock than the driver's
    (`want`) is "stale": it is never run mismatched."""
    try:
        state, why = envbuild.env_state(env)
        key = envbuild.env_key(envbuild.env_paths(env))
    except EnvBuildError as exc:
        return "missing", str(exc), None
    if state == "ready" and want is not None and key != want:
        return (
            "stale",
            (
                f"its lock, Python or platform differ from the driver's (key {key} here, {want} on the "
                "driver): install the driver's mltag version on this node"
            ),
            key,
        )
    return state, why, key


def prepare_envs(envs: dict[str, str], build: bool) -> dict[str, Any]:
    """The Ray task run once per node: build (under the builder's file lock) or only check each env.
    Returns this node's facts and {env: {state, why, key}}."""
    out: dict[str, Any] = {"host": node_label(), "project_root": str(PROJECT_ROOT), "envs": {}}
    for env, want in envs.items():
        if build:
            try:
                envbuild.build_env(env, log=lambda line: None)
            except Exception as exc:  # a failed build is this node's fact, not the run's end
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                out["envs"][env] = {"state": "missing", "why": f"building it failed: {first}", "key": None}
                continue
        state, why, key = env_on_node(env, want)
        out["envs"][env] = {"state": state, "why": why, "key": key}
    return out


def hello_on_node(env: str, adapter: str, want: str | None) -> dict[str, Any]:
    """`mltag health --cluster`: this node's env state and what its runner answers to hello."""
    state, why, key = env_on_node(env, want)
    out: dict[str, Any] = {"host": node_label(), "state": state, "why": why, "key": key, "hello": None}
    if state != "ready":
        return out
    runner = RunnerProcess.start(
        envbuild.env_paths(env).python, adapter, logs_dir() / "health" / f"{env}.log", offline=True
    )
    try:
        out["hello"] = runner.call("hello", 180.0)
    except Exception as exc:  # reported, with the log on that node
        out["state"], out["why"] = "broken", f"the runner did not answer hello: {exc} (see {runner.log_path})"
    finally:
        runner.stop()
    return out


class RunnerHost:
    """A Ray actor holding at most one runner subprocess, started from this node's model venv.

    The driver starts, steps (queues requests, then waits for the oldest reply), kills and stops
    it as the supervisor drives a RunnerProcess: the next photo is written into the runner before
    the actor waits for the one the runner computes, so it waits inside the runner, as on one
    machine. The runner dies with this actor (its parent-death watch), so `ray.kill` or a lost
    node leaves no orphan."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.runner: RunnerProcess | None = None
        self.infers = 0  # infer replies taken from the current runner
        self.infers_ahead = 0  # ... of which the next request was already in the runner

    def ready(self) -> dict[str, Any]:
        return {"host": node_label(), "pid": os.getpid()}

    def start(
        self,
        env: str | None,
        want: str | None,
        python: str,
        adapter: str,
        log_name: str,
        offline: bool,
        module: str,
        extra_env: dict[str, str],
    ) -> Reply:
        """Start a fresh runner: ("ok", {pid, log_path}) or ("oserror", why) (the env cannot run here)."""
        self.kill()
        if env is not None:  # a registry model: this node's own venv, checked against the driver's key
            state, why, _ = env_on_node(env, want)
            if state != "ready":
                return ("oserror", f"env '{env}' on node {node_label()} is {state}: {why}")
            python = str(envbuild.env_paths(env).python)
        log_path = logs_dir() / self.run_id / log_name
        try:
            self.runner = RunnerProcess.start(
                Path(python), adapter, log_path, offline=offline, module=module, extra_env=extra_env
            )
        except (OSError, ValueError) as exc:
            return ("oserror", f"{exc} (node {node_label()})")
        self.infers = self.infers_ahead = 0
        return ("ok", {"pid": self.runner.pid, "log_path": str(log_path)})

    def step(self, requests: list[tuple[str, dict[str, Any], list[int]]], timeout: float, *data: bytes) -> Reply:
        """Queue `requests` in the runner without waiting, then the reply to the oldest request not
        yet answered, within `timeout` s. `data`: the bytes of the photos of the requests, in order
        (`fields["images"][i]` for each i of a request's list), passed as the call's own arguments
        (ObjectRefs on the driver), so that Ray brings each to this node once, before the call runs,
        however many models read it (orchestrator/cluster/photos.py)."""
        if self.runner is None:
            return ("crashed", "no runner is running on this host", "not running", "")
        runner = self.runner
        photos = iter(data)
        for op, fields, indices in requests:
            if indices:
                images = fields["images"]
                for i in indices:
                    images[i] = {**images[i], "data": next(photos)}
            runner.request(op, **fields)
        if not runner.unanswered:
            return ("crashed", "no request is waiting for a reply on this host", "not running", "")
        op = runner.oldest_op
        try:
            return self._answer(lambda: runner.reply(runner.oldest_id, timeout))
        finally:
            if op == "infer":
                self.infers += 1
                self.infers_ahead += runner.unanswered > 0

    def _answer(self, wait: Callable[[], dict[str, Any]]) -> Reply:
        try:
            return ("ok", wait())
        except RunnerTimeout as exc:
            return ("timeout", str(exc))
        except ProtocolViolation as exc:
            return ("violation", str(exc), exc.exit_info, exc.stderr_tail)
        except RunnerCrashed as exc:
            return ("crashed", str(exc), exc.exit_info, exc.stderr_tail)
        except RemoteError as exc:
            return ("remote", exc.type, exc.message, exc.traceback)

    def kill(self, grace: float = KILL_GRACE_S) -> str:
        if self.runner is None:
            return "not running"
        runner, self.runner = self.runner, None
        info = runner.kill(grace)
        self._note(runner)
        return info

    def stop(self, timeout: float = 10.0) -> str:
        if self.runner is None:
            return "not running"
        runner, self.runner = self.runner, None
        runner.stop(timeout)
        self._note(runner)
        return "stopped"

    def _note(self, runner: RunnerProcess) -> None:
        """The runner's log (on this node) says how often the next photo was already waiting in it."""
        try:
            with open(runner.log_path, "a") as log:
                log.write(
                    f"mltag host: {self.infers} infer replies; the next request was already in the runner "
                    f"at {self.infers_ahead} of them\n"
                )
        except OSError:
            pass

    def runner_pid(self) -> int | None:
        return self.runner.pid if self.runner is not None else None
