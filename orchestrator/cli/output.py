"""The one format dispatch: results streamed as a table, JSON, JSON Lines, CSV or HTML, to stdout or
--out (written atomically: orchestrator/report/output.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from orchestrator.cli.console import err, stdout
from orchestrator.report.output import open_output

if TYPE_CHECKING:
    from orchestrator.document import Results
    from orchestrator.report.comparison_views import Views


def emit(results: Results, fmt: str, out: Path | None, views: Views) -> None:
    """analyze, run, judge and report: the results in `fmt`, streamed image by image."""
    with open_output(out) as stream:
        if fmt == "table":
            from orchestrator.report.table import render

            render(results, Console(file=stream, width=160) if out else stdout(), views)
        elif fmt == "html":
            from orchestrator.paths import thumbnails_dir
            from orchestrator.report.html import write_html

            write_html(results, stream, views, thumb_cache=thumbnails_dir())
        elif fmt == "csv":
            from orchestrator.report.flat import write_csv

            write_csv(results, stream, views.threshold)
        elif fmt == "jsonl":
            from orchestrator.report.flat import write_jsonl

            write_jsonl(results, stream, views.comparison(results.models))
        else:
            from orchestrator.report.flat import write_json

            write_json(results, stream, views.comparison(results.models))
    if out:
        err.print(f"wrote {out}")


def write_text(text: str, out: Path | None) -> None:
    """Text to --out (atomically), else stdout, ending in one newline."""
    with open_output(out) as stream:
        stream.write(text if text.endswith("\n") else text + "\n")
