"""`mltag health --cluster ...`: each node, its resources, and per env: built and current (the
driver's key), and what its runner reports (python, library versions, devices)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.cluster.connect import Cluster, Node, expected_key
from orchestrator.models.registry import ModelSpec
from orchestrator.run.health import describe_hello


@dataclass
class EnvReport:
    env: str
    models: list[str]
    problem: str | None = None
    fix: str = ""
    detail: str = ""
    devices: list[str] = field(default_factory=list)


@dataclass
class NodeReport:
    node: Node
    host: str = "?"
    envs: list[EnvReport] = field(default_factory=list)
    unreachable: str | None = None

    @property
    def healthy(self) -> bool:
        return self.unreachable is None and all(e.problem is None for e in self.envs)


def cluster_health(cluster: Cluster, specs: list[ModelSpec]) -> list[NodeReport]:
    """One task per node and env (no CPU reserved): the env's state there and its runner's hello."""
    from orchestrator.cluster.node import hello_on_node

    by_env: dict[str, list[ModelSpec]] = {}
    for spec in specs:
        if not spec.server:  # a served model (Ollama) has no model env of its own to check per node
            by_env.setdefault(spec.env, []).append(spec)
    nodes = cluster.nodes()
    refs: dict[tuple[str, str], Any] = {}
    for node in nodes:
        for env, members in by_env.items():
            refs[node.node_id, env] = cluster.on_node(node, hello_on_node, env, members[0].adapter, expected_key(env))
    reports = []
    for node in nodes:
        report = NodeReport(node)
        for env, members in sorted(by_env.items()):
            names = [m.name for m in members]
            fix = (
                f"mltag setup-envs --models {','.join(names)} (on {node.ip}), or any `mltag analyze --cluster` "
                "(it builds missing envs on every node)"
            )
            try:
                info = cluster.ray.get(refs[node.node_id, env])
            except Exception as exc:  # the node went away between listing and asking
                report.unreachable = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                break
            report.host = info["host"]
            if info["state"] != "ready":
                report.envs.append(EnvReport(env, names, f"env '{env}' is {info['state']}: {info['why']}", fix))
            else:
                hello = info["hello"] or {}
                report.envs.append(
                    EnvReport(
                        env,
                        names,
                        detail=f"key {info['key']}; " + describe_hello(env, hello),
                        devices=list(hello.get("devices") or []),
                    )
                )
        reports.append(report)
    return reports


def devices(report: NodeReport) -> str:
    """The node's devices as its runners report them."""
    seen = [d for env in report.envs for d in env.devices]
    return ", ".join(dict.fromkeys(seen)) or "unknown (no runner answered)"


def print_health(console: Any, reports: list[NodeReport]) -> int:
    """Print each node and its envs; the number of unhealthy nodes."""
    for report in reports:
        node = report.node
        mark = "[green]healthy[/]" if report.healthy else "[red]unhealthy[/]"
        console.print(
            f"[bold]node {node.label}[/] {report.host} {mark}: {node.cpus:g} CPU, {node.gpus:g} GPU, "
            f"{node.memory_mb / 1024:.1f} GiB memory; devices: {devices(report)}",
            highlight=False,
        )
        if report.unreachable:
            console.print(f"  [red]FAIL[/] unreachable: {report.unreachable}", highlight=False)
        for env in report.envs:
            models = ", ".join(env.models)
            if env.problem is None:
                console.print(f"  [green]ok[/]   env {env.env} ({models}): {env.detail}", highlight=False)
            else:
                console.print(f"  [red]FAIL[/] env {env.env} ({models}): {env.problem}", highlight=False)
                console.print(f"       fix: [cyan]{env.fix}[/]", highlight=False)
    return sum(not r.healthy for r in reports)
