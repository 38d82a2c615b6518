"""The `mltag` command line (typer): dispatch only. Each command is a module of commands/; the options
they share are in options.py, their checks in choices.py.

Exit codes: 0 every cell ok or no_tags; 1 some cell failed (or a model is unhealthy, or work failed:
orchestrator/errors.py); 2 usage. Without --out, json/csv go to stdout and nothing else does;
progress, logs and errors go to stderr. Every MltagError ends here, in `_reported`, as one line
(and its fix); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any

import typer

from orchestrator.cli.commands.analyze import analyze
from orchestrator.cli.commands.envs import lock, setup_envs
from orchestrator.cli.commands.evaluate import evaluate
from orchestrator.cli.commands.export import export
from orchestrator.cli.commands.health import health
from orchestrator.cli.commands.judge import judge
from orchestrator.cli.commands.labels import export_labels, import_labels
from orchestrator.cli.commands.models import models
from orchestrator.cli.commands.paths import paths_command
from orchestrator.cli.commands.report import report
from orchestrator.cli.commands.run import run
from orchestrator.cli.commands.serve import serve
from orchestrator.cli.commands.store import stats, vacuum
from orchestrator.cli.console import print_error
from orchestrator.errors import MltagError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Run many image tagging / captioning models on the same photos and compare them.",
)


def _print_version(value: bool) -> None:
    if value:
        from orchestrator.paths import version

        print(f"mltag {version()}")
        raise typer.Exit()


@app.callback()
def _global_options(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print mltag's version and exit."),
    ] = None,
) -> None:
    """Run many image tagging / captioning models on the same photos and compare them."""


def _reported(command: Callable[..., None]) -> Callable[..., None]:
    """The one error handler: an MltagError is printed as one line (and its fix) and exits 2 or 1."""

    @functools.wraps(command)
    def handled(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except MltagError as exc:
            print_error(exc)
            raise typer.Exit(exc.exit_code) from None

    return handled


for _name, _command in (
    ("analyze", analyze),
    ("run", run),
    ("report", report),
    ("judge", judge),
    ("eval", evaluate),
    ("export", export),
    ("models", models),
    ("health", health),
    ("setup-envs", setup_envs),
    ("lock", lock),
    ("serve", serve),
    ("paths", paths_command),
):
    app.command(_name)(_reported(_command))

store_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="The results store: its size per model (stats), and compacting it (vacuum).",
)
store_app.command("stats")(_reported(stats))
store_app.command("vacuum")(_reported(vacuum))
app.add_typer(store_app, name="store")

labels_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Your labels (the truth `mltag eval` ranks the models on), kept in the results store.",
)
labels_app.command("export")(_reported(export_labels))
labels_app.command("import")(_reported(import_labels))
app.add_typer(labels_app, name="labels")


def main() -> None:
    app()
