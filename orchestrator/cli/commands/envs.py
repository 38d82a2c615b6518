"""`mltag setup-envs` and `mltag lock`: the model venvs (orchestrator/models/envbuild.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli import options as o
from orchestrator.cli.choices import models
from orchestrator.cli.console import err
from orchestrator.errors import EnvBuildError
from orchestrator.models import envbuild

Rebuild = Annotated[bool, typer.Option("--force", help="Rebuild even if current.")]
EnvName = Annotated[str, typer.Argument(help="Env name (envs/requirements/<env>.in).")]


def _log(line: str) -> None:
    err.print(line, highlight=False, markup=False, soft_wrap=True)


def setup_envs(names: o.Models = "all", force: Rebuild = False) -> None:
    """Build the venvs the selected models need (uv, deduplicated, locked)."""
    for env in sorted({spec.env for spec in models(names)}):
        try:
            envbuild.build_env(env, log=_log, force=force)
        except EnvBuildError as exc:
            raise EnvBuildError(f"building env '{env}' failed: {exc}") from exc
        err.print(f"env '{env}': ready")


def lock(env: EnvName) -> None:
    """Re-compile an env's lock file from its .in file (maintainers)."""
    err.print(f"wrote {envbuild.lock_env(env, log=_log)}")
