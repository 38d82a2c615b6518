"""`mltag models`: the registry, with each model's env and weights state."""

from __future__ import annotations

from rich.table import Table

from orchestrator.cli.choices import registry
from orchestrator.cli.console import stdout
from orchestrator.models import envbuild


def models() -> None:
    """The registry: name, kind, env, hub id@revision, env built?, weights cached?"""
    from orchestrator.run.health import weights_cached

    table = Table(title="mltag models")
    for col in ("name", "kind", "env", "hub id @ revision", "remote code", "env built", "weights", "size"):
        table.add_column(col, no_wrap=col != "size")
    for spec in registry().values():
        state, _ = envbuild.env_state(spec.env)
        table.add_row(
            spec.name,
            spec.kind,
            spec.env,
            f"{spec.hub_id}@{spec.revision[:12]}",
            "[yellow]yes[/]" if spec.remote_code else "no",
            "[green]built[/]" if state == "ready" else f"[yellow]{state}[/]",
            f"[dim]{spec.server} server[/]"
            if spec.server
            else "[green]cached[/]"
            if weights_cached(spec)
            else "[dim]not cached[/]",
            spec.size,
        )
    stdout().print(table)
