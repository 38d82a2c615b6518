"""Where the CLI writes: stdout for results only, stderr (`err`) for progress, messages and errors."""

from __future__ import annotations

import atexit
import signal
import sys

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestrator.errors import MltagError

# soft_wrap: a message is never cut into lines by rich (a path broken mid-name cannot be copied); the
# terminal wraps it. Tables and the progress bar are still laid out to the terminal's width.
err = Console(stderr=True, soft_wrap=True)


def stdout() -> Console:
    """Rich assumes 80 columns when piped; a piped table should not squeeze its columns."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def print_error(exc: MltagError) -> None:
    """The one-line error, and its fix on a second line when it has one."""
    err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
    if exc.fix:
        err.print(f"  fix: {exc.fix}", highlight=False, soft_wrap=True, markup=False)


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


def install_cleanup() -> None:
    """No runner outlives the CLI: killed at exit, and on SIGTERM (which then runs atexit too)."""
    from orchestrator.run.launch import kill_all_runners

    atexit.register(kill_all_runners)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
