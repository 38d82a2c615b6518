"""The `mltag` command lines the docs show, read from the files (docs/examples/*.sh, the ```bash blocks of
README.md and docs/**/*.md) and parsed by the real typer app, so that a renamed command or flag, or a
value a choice no longer takes, fails a test instead of a reader."""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main

from orchestrator.cli import app
from orchestrator.paths import PROJECT_ROOT

EXAMPLES = PROJECT_ROOT / "docs" / "examples"
# the ends of a command line in a shell example: a redirection, a pipe, a command list
SHELL_ENDS = {">", ">>", "2>", "2>&1", "|", "&&", "||", ";", "&"}
HEREDOC = re.compile(r"<<-?\s*'?(\w+)'?")


def shell_lines(text: str) -> Iterator[str]:
    """Logical lines of a shell text: continuations joined, here-document bodies left out."""
    lines = iter(text.splitlines())
    for line in lines:
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines, "")
        yield line
        if m := HEREDOC.search(line):
            for body in lines:
                if body.strip() == m.group(1):
                    break


def bash_blocks(markdown: str) -> str:
    """The text of a markdown file's ```bash fences."""
    return "\n".join(re.findall(r"^```(?:bash|sh|shell)\n(.*?)^```", markdown, re.M | re.S))


def mltag_commands(text: str) -> list[list[str]]:
    """The arguments of each `mltag ...` command line of a shell text (what follows `mltag`)."""
    out = []
    for line in shell_lines(text):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise ValueError(f"not a shell line: {line!r}: {exc}") from None
        if not words or words[0].rsplit("/", 1)[-1] != "mltag":  # mltag, .venv/bin/mltag
            continue
        args: list[str] = []
        for word in words[1:]:
            if word in SHELL_ENDS:
                break
            args.append(word)
        out.append(args)
    return out


@functools.cache
def _cli() -> Any:
    return typer.main.get_command(app)


def parse(args: list[str]) -> Any:
    """Parse `mltag ARGS` as the CLI would, down to the (sub)command, without running it. Raises the CLI's
    UsageError (an unknown command or option, a missing argument, a bad choice or number)."""
    command: Any = _cli()
    ctx = command.make_context("mltag", list(args))
    while hasattr(command, "resolve_command"):  # a group: its subcommand parses the rest
        name, command, rest = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx


def documented_files() -> list[Path]:
    """Every file whose commands a reader copies: the example files, the README, the docs pages."""
    pages = sorted((PROJECT_ROOT / "docs").rglob("*.md"))
    return [*sorted(EXAMPLES.glob("*.sh")), PROJECT_ROOT / "README.md", *pages]


def commands_of(path: Path) -> list[list[str]]:
    text = path.read_text()
    return mltag_commands(text if path.suffix == ".sh" else bash_blocks(text))
