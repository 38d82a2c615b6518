"""Connect to a Ray cluster, list its nodes, and get every model env ready (or reported) on each.

--cluster values: `auto` (RAY_ADDRESS, else the cluster `ray start` runs on this machine),
`ray://HOST:PORT` (Ray Client), `HOST:PORT` (a cluster's GCS address, from a node of it), or
`local` (a private Ray on this machine, for this run only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from orchestrator.cluster import require_ray
from orchestrator.errors import ClusterError, EnvBuildError
from orchestrator.models import envbuild

START_FIX = (
    "start one (`ray start --head` on this machine, `ray start --address=HEAD:6379` on the others), or "
    "set RAY_ADDRESS; `--cluster local` runs a private Ray on this machine for this run"
)


@dataclass(frozen=True)
class Node:
    node_id: str
    ip: str
    cpus: float
    gpus: float
    memory_mb: float
    head: bool = False

    @property
    def label(self) -> str:
        return f"{self.ip} ({self.node_id[:8]}{', head' if self.head else ''})"


@dataclass
class EnvOnNodes:
    """One env across the cluster: the nodes that can run it, and why the others cannot."""

    env: str
    ready: list[Node] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)  # node label -> state: why


def expected_key(env: str) -> str | None:
    """The driver's env key: a node runs a model only from an env built from the same lock."""
    try:
        return envbuild.env_key(envbuild.env_paths(env))
    except EnvBuildError:
        return None


class Cluster:
    """A connected cluster (one per process: Ray allows one connection)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.ray = require_ray()
        kwargs: dict[str, Any] = {
            "namespace": "mltag",
            "log_to_driver": False,
            "logging_level": logging.ERROR,
            "ignore_reinit_error": True,
        }  # a process already connected stays so
        try:
            if address == "local":
                self.ray.init(include_dashboard=False, **kwargs)
            elif address == "auto" or ":" in address:
                self.ray.init(address=address, **kwargs)
            else:
                raise ClusterError(
                    f"--cluster {address!r} is not an address",
                    "use auto, ray://HOST:PORT, HOST:PORT (a GCS address) or local",
                )
        except ClusterError:
            raise
        except ConnectionError as exc:
            raise ClusterError(f"no Ray cluster at {address!r} ({str(exc).splitlines()[0]})", START_FIX) from None
        except Exception as exc:  # Ray raises many kinds here (bad address, version mismatch, ...)
            raise ClusterError(
                f"connecting to the Ray cluster at {address!r} failed: "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                START_FIX,
            ) from None

    def nodes(self) -> list[Node]:
        out = []
        for n in self.ray.nodes():
            if not n.get("Alive"):
                continue
            res = n.get("Resources", {})
            out.append(
                Node(
                    node_id=n["NodeID"],
                    ip=n.get("NodeManagerAddress", "?"),
                    cpus=res.get("CPU", 0.0),
                    gpus=res.get("GPU", 0.0),
                    memory_mb=res.get("memory", 0.0) / 2**20,
                    head="node:__internal_head__" in res,
                )
            )
        return out

    def on_node(self, node: Node, fn: Any, *args: Any) -> Any:
        """An ObjectRef of `fn(*args)` run as a task on `node` (no CPU reserved: it only builds or checks)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = self.ray.remote(fn).options(
            num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False)
        )
        return task.remote(*args)

    def prepare(self, envs: list[str], build: bool = True) -> dict[str, EnvOnNodes]:
        """One task per node builds (or, build=False, checks) every env in `envs`, under the env
        builder's file lock, keyed as on one machine; an env whose key differs from the driver's is
        reported, never used."""
        from orchestrator.cluster.node import prepare_envs

        wanted = {env: expected_key(env) for env in envs}
        nodes = self.nodes()
        refs = [self.on_node(node, prepare_envs, {e: k for e, k in wanted.items() if k}, build) for node in nodes]
        out = {env: EnvOnNodes(env) for env in envs}
        for env, key in wanted.items():
            if key is None:
                out[env].problems["driver"] = f"no lock file for env '{env}' in this checkout"
        for node, ref in zip(nodes, refs, strict=True):
            try:
                facts = self.ray.get(ref)
            except Exception as exc:  # the node died or the task failed: that node runs nothing
                for env in envs:
                    out[env].problems[node.label] = f"unreachable: {type(exc).__name__}: {str(exc).splitlines()[0]}"
                continue
            for env, info in facts["envs"].items():
                if info["state"] == "ready":
                    out[env].ready.append(node)
                else:
                    out[env].problems[f"{node.label} {facts['host']}"] = f"{info['state']}: {info['why']}"
        return out

    def shutdown(self) -> None:
        try:
            self.ray.shutdown()
        except Exception:  # already gone (the cluster died first): nothing left to release
            pass
