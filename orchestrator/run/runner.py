"""What the supervisor needs of a runner, whatever carries its frames: a RunnerProcess here
(orchestrator/run/processes.py), or a runner a cluster node hosts (orchestrator/cluster/transport.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

KILL_GRACE_S = 3.0  # SIGTERM, then SIGKILL after this long


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
    waiting in it): a RunnerProcess, or a HostedRunner (its host actor keeps the next batch
    waiting in the runner it hosts)."""

    def request(self, op: str, **fields: Any) -> int: ...

    def reply(self, req_id: int, timeout: float) -> dict[str, Any]: ...

    def shutdown(self, timeout: float = 10.0) -> bool: ...

    def finish(self, timeout: float = 10.0) -> None: ...
