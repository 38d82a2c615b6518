"""The `mltag` typer app as the click command mkdocs-click documents (docs/reference/cli.md): the CLI
reference is generated from the code, so a renamed flag or a new command shows in the docs at the next build."""

from __future__ import annotations

import typer.main

from orchestrator.cli import app

command = typer.main.get_command(app)
