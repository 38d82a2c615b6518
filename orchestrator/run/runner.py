"""What the supervisor needs of a runner, whatever carries its frames: a RunnerProcess here
(orchestrator/run/transport.py), or a runner a cluster node hosts (orchestrator/cluster/transport.py),
seen through OneByOne."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any, Protocol

KILL_GRACE_S = 3.0   # SIGTERM, then SIGKILL after this long


class Runner(Protocol):
    """What the supervisor needs of a runner: a RunnerProcess here, or a runner a cluster node hosts
    (orchestrator/cluster/transport.py HostedRunner)."""

    log_path: Path

    @property
    def pid(self) -> int: ...

    def alive(self) -> bool: ...

    def call(self, op: str, timeout: float, **fields: Any) -> dict[str, Any]: ...

    def kill(self, grace: float = KILL_GRACE_S) -> str: ...

    def stop(self, timeout: float = 10.0) -> None: ...


class PipelinedRunner(Runner, Protocol):
    """A runner that takes requests ahead of their replies (the supervisor keeps the next batch
    waiting in it): a RunnerProcess, or any Runner through OneByOne."""

    def request(self, op: str, **fields: Any) -> int: ...

    def reply(self, req_id: int, timeout: float) -> dict[str, Any]: ...

    def shutdown(self, timeout: float = 10.0) -> bool: ...

    def finish(self, timeout: float = 10.0) -> None: ...


class OneByOne:
    """request()/reply() over a runner that only answers call() (a hosted one, orchestrator/cluster):
    each request is made when its reply is awaited, so nothing waits in that runner ahead."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.log_path = runner.log_path
        self._queued: deque[tuple[int, str, dict[str, Any]]] = deque()
        self._next_id = 0

    @property
    def pid(self) -> int:
        return self.runner.pid

    def alive(self) -> bool:
        return self.runner.alive()

    def call(self, op: str, timeout: float, **fields: Any) -> dict[str, Any]:
        return self.runner.call(op, timeout, **fields)

    def kill(self, grace: float = KILL_GRACE_S) -> str:
        return self.runner.kill(grace)

    def stop(self, timeout: float = 10.0) -> None:
        self.runner.stop(timeout)

    def request(self, op: str, **fields: Any) -> int:
        self._next_id += 1
        self._queued.append((self._next_id, op, fields))
        return self._next_id

    def reply(self, req_id: int, timeout: float) -> dict[str, Any]:
        if not self._queued or self._queued[0][0] != req_id:
            raise ValueError(f"request {req_id} is not the oldest unanswered one")
        _, op, fields = self._queued.popleft()
        return self.runner.call(op, timeout, **fields)

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Stopped here and now (no exit in the background): False, nothing is left to wait for."""
        self.runner.stop(timeout)
        return False

    def finish(self, timeout: float = 10.0) -> None:
        self.runner.kill()
