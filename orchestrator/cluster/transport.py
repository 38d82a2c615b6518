"""The driver's side of a runner hosted on a node: the RunnerProcess interface, over a Ray actor.

The supervisor starts, calls, kills and stops a `HostedRunner` exactly as a local RunnerProcess
(ModelJob.start is `HostSlot.start`), so its timeout / crash / restart / poison-image rules apply
unchanged. The node enforces each deadline itself; the driver waits a margin longer, so that a
host that stops answering (a wedged or lost node) is a timeout here, and a host that dies
(`ray.kill`, a lost node) is a crash of its runner: the image in flight is retried once on a
fresh host, as after any runner crash. Requests are sent ahead of their replies (the actor keeps
the next one waiting in the runner), and a photo travels as an ObjectRef put once for every model
(photos.py), which Ray brings to each node once.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any

from orchestrator.cluster.node import RunnerHost
from orchestrator.errors import ProtocolViolation, RemoteError, RunnerCrashed, RunnerTimeout
from orchestrator.run.runner import KILL_GRACE_S

MARGIN_S = 30.0  # how much longer than the node's own deadline the driver waits
START_S = 600.0  # a host actor must be placed and started within this (a busy cluster queues it)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class HostSlot:
    """One replica of a model's pool: a host actor pinned to one node, created when a runner is
    first started and replaced after it dies. `start` has RunnerProcess.start's signature."""

    def __init__(
        self,
        ray: Any,
        run_id: str,
        name: str,
        node_id: str,
        env: str | None,
        key: str | None,
        cpus: float,
        gpus: float,
        memory_mb: int,
    ) -> None:
        self.ray = ray
        self.run_id, self.name, self.node_id = run_id, name, node_id
        self.env, self.key = env, key
        self.cpus, self.gpus, self.memory_mb = cpus, gpus, memory_mb
        self.actor: Any = None
        self.host = "?"
        self.generation = 0

    def create(self) -> Any:
        """Ask Ray for a host actor on this slot's node; returns the ObjectRef of its `ready()`."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.generation += 1
        options: dict[str, Any] = {
            "num_cpus": self.cpus,
            "num_gpus": self.gpus,
            "max_restarts": 0,
            "max_concurrency": 1,
            "name": f"mltag-{self.run_id}-{self.name}-{self.generation}",
            "scheduling_strategy": NodeAffinitySchedulingStrategy(self.node_id, soft=False),
        }
        if self.memory_mb:
            options["memory"] = self.memory_mb * 2**20
        self.actor = self.ray.remote(RunnerHost).options(**options).remote(self.run_id)
        return self.actor.ready.remote()

    def discard(self) -> None:
        if self.actor is not None:
            try:
                self.ray.kill(self.actor, no_restart=True)
            except Exception:  # already dead
                pass
            self.actor = None

    def start(
        self,
        python: Path,
        adapter: str,
        log_path: Path,
        *,
        offline: bool = False,
        extra_env: dict[str, str] | None = None,
        module: str = "runners.host",
    ) -> HostedRunner:
        ready = self.create() if self.actor is None else None
        env = dict(extra_env or {})
        env["OMP_NUM_THREADS"] = str(max(1, int(self.cpus)))  # this replica's share of the node, not the driver's
        try:
            if ready is not None:
                self.host = self.ray.get(ready, timeout=START_S)["host"]
            reply = self.ray.get(
                self.actor.start.remote(
                    self.env, self.key, str(python), adapter, f"{self.name}.log", offline, module, env
                ),
                timeout=START_S,
            )
        except Exception as exc:  # lost, unplaceable or dead host: the first call reports it as a crash
            self.discard()
            return HostedRunner(
                self,
                log_path,
                dead=f"runner host for {self.name} could not start: {type(exc).__name__}: {_first_line(exc)}",
            )
        if reply[0] == "oserror":  # the env cannot run here: the supervisor skips the model with the fix
            raise OSError(reply[1])
        return HostedRunner(self, Path(reply[1]["log_path"]), pid=reply[1]["pid"])


class HostedRunner:
    """A runner on a node, as the supervisor sees it (request / reply / kill / stop / pid / log_path).

    The supervisor requests the next batch before it waits for the reply to the one before; both
    go to the host actor in one call (`step`), which writes the new request into the runner and
    then waits, so the next batch waits inside the runner while it computes, as in a local
    RunnerProcess."""

    def __init__(self, slot: HostSlot, log_path: Path, pid: int = 0, dead: str = "") -> None:
        self.slot = slot
        self.log_path = log_path
        self.pid = pid
        self.dead = dead  # why this runner can no longer answer (its host is gone)
        self.wedged = False  # its host did not answer within the margin
        self._awaiting: deque[tuple[int, str]] = deque()  # (id, op) of requests not yet answered
        self._unsent: list[tuple[str, dict[str, Any], list[int]]] = []  # requests the host has not had yet
        self._unsent_refs: list[Any] = []  # ... and their photos' ObjectRefs
        self._next_id = 0

    def alive(self) -> bool:
        return not self.dead and not self.wedged

    def request(self, op: str, **fields: Any) -> int:
        """Queue a request without waiting: it goes to the host with the next `reply`, in the same
        actor call, which writes it into the runner before it waits (one Ray call per batch). A photo
        given as an ObjectRef (photos.py) travels as one of that call's own arguments, which Ray
        fetches to the node before the call runs."""
        self._next_id += 1
        self._awaiting.append((self._next_id, op))
        fields, photos, refs = _photo_refs(self.slot.ray, fields)
        self._unsent.append((op, fields, photos))
        self._unsent_refs += refs
        return self._next_id

    def reply(self, req_id: int, timeout: float) -> dict[str, Any]:
        """The reply to `req_id`, the oldest request not yet answered; the host enforces `timeout`
        itself, the driver waits MARGIN_S longer."""
        if not self._awaiting or self._awaiting[0][0] != req_id:
            raise ValueError(f"request {req_id} is not the oldest unanswered one")
        op = self._awaiting.popleft()[1]
        if self.dead:
            raise RunnerCrashed(self.dead, "host lost", "")
        ray = self.slot.ray
        unsent, refs, self._unsent, self._unsent_refs = self._unsent, self._unsent_refs, [], []
        try:
            reply = ray.get(self.slot.actor.step.remote(unsent, timeout, *refs), timeout=timeout + MARGIN_S)
        except ray.exceptions.GetTimeoutError:
            self.wedged = True
            raise RunnerTimeout(
                f"no reply to '{op}' within {timeout:g} s (nor from its host on {self.slot.host})"
            ) from None
        except (ray.exceptions.RayActorError, AttributeError) as exc:  # AttributeError: discarded already
            self._lost(op, exc)
            raise RunnerCrashed(self.dead, "host died", "") from None
        tag = reply[0]
        if tag == "ok":
            answer: dict[str, Any] = reply[1]
            return answer
        if tag == "timeout":
            raise RunnerTimeout(reply[1])
        if tag == "violation":
            raise ProtocolViolation(*reply[1:])
        if tag == "crashed":
            raise RunnerCrashed(*reply[1:])
        raise RemoteError(*reply[1:])

    def call(self, op: str, timeout: float, **fields: Any) -> dict[str, Any]:
        return self.reply(self.request(op, **fields), timeout)

    def _lost(self, op: str, exc: BaseException) -> None:
        self.dead = (
            f"runner host on {self.slot.host} died while handling '{op}' "
            f"({type(exc).__name__}: {_first_line(exc)[:300]})"
        )
        self.slot.discard()

    def kill(self, grace: float = KILL_GRACE_S) -> str:
        """Kill the runner through its host; a host that does not answer is killed itself (the
        runner dies with it)."""
        if self.dead:
            return self.dead
        if self.wedged:
            self.slot.discard()
            return "its host did not answer and was killed"
        try:
            return str(self.slot.ray.get(self.slot.actor.kill.remote(grace), timeout=grace + MARGIN_S))
        except Exception:
            self.slot.discard()
            return "its host was lost and killed"

    def stop(self, timeout: float = 10.0) -> None:
        if self.dead or self.wedged:
            self.kill()
            return
        try:
            self.slot.ray.get(self.slot.actor.stop.remote(timeout), timeout=2 * timeout + MARGIN_S)
        except Exception:
            self.slot.discard()

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Stopped on its node here and now (its host waits for the exit): False, nothing is left to
        wait for in the background. With requests unanswered there is no polite way out: False."""
        if self._awaiting:
            return False
        self.stop(timeout)
        return False

    def finish(self, timeout: float = 10.0) -> None:
        self.kill()


def _photo_refs(ray: Any, fields: dict[str, Any]) -> tuple[dict[str, Any], list[int], list[Any]]:
    """`fields` without the ObjectRefs of its images' data, their indices, and the refs."""
    images = fields.get("images")
    if not isinstance(images, list):
        return fields, [], []
    photos = [i for i, item in enumerate(images) if isinstance(item.get("data"), ray.ObjectRef)]
    if not photos:
        return fields, [], []
    refs = [images[i]["data"] for i in photos]
    bare = [{k: v for k, v in item.items() if k != "data"} if i in photos else item for i, item in enumerate(images)]
    return {**fields, "images": bare}, photos, refs
