"""`mltag health`: each model's env, runner, weights (and one inference with --deep)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import options as o
from orchestrator.cli.choices import models, option_overrides, pairs, registry
from orchestrator.cli.console import install_cleanup, stdout

Names = Annotated[
    list[str] | None, typer.Argument(help="Models to check (default: all but hosted APIs and endpoints not named yet).")
]
Deep = Annotated[bool, typer.Option("--deep", help="Also run one inference on a generated image.")]


def health(
    names: Names = None,
    deep: Deep = False,
    weights: o.Weights = None,
    device: o.Device = "auto",
    cluster: o.Cluster = None,
    option: o.Option = None,
) -> None:
    """Check each model: env present and current, runner answers hello, weights present (a served model: its
    server or endpoint answers, takes the key, has the model; `--option MODEL.base_url=...` as for a run).
    With --cluster: each node, its devices, and each env there (built, current, what its runner reports)."""
    from orchestrator.run.health import model_health

    # unnamed, the models `--models all` runs (and the judges): a hosted API or an endpoint not named yet
    # is checked when named (`mltag health openai-gpt4o`)
    specs = models(",".join(names)) if names else [s for s in registry().values() if not s.opt_in]
    if cluster:
        from orchestrator.cli.commands.analyze import connect
        from orchestrator.cluster.health import cluster_health, print_health

        raise typer.Exit(1 if print_health(stdout(), cluster_health(connect(cluster), specs)) else 0)
    local = {k: Path(v).expanduser() for k, v in pairs(weights, "--weights").items()}
    overrides = option_overrides(option)
    install_cleanup()
    console = stdout()
    unhealthy = 0
    for spec in specs:
        report = model_health(spec, local.get(spec.name), deep=deep, device=device, overrides=overrides)
        mark = "[green]healthy[/]" if report.healthy else "[red]unhealthy[/]"
        console.print(f"[bold]{spec.name}[/] {mark}")
        for check in report.checks:
            if check.problem is None:
                console.print(f"  [green]ok[/]   {check.name}: {check.detail}", highlight=False)
            else:
                console.print(f"  [red]FAIL[/] {check.name}: {check.problem}", highlight=False)
                if check.fix:
                    console.print(f"       fix: [cyan]{check.fix}[/]", highlight=False)
        unhealthy += not report.healthy
    raise typer.Exit(1 if unhealthy else 0)
