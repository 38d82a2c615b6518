"""`mltag report`: stored results rendered again, without running any model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import options as o
from orchestrator.cli.choices import ViewFlags, check_format
from orchestrator.cli.console import err
from orchestrator.cli.output import emit
from orchestrator.cli.stores import load_stored
from orchestrator.errors import UsageError

Under = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Show the stored images recorded under these files or folders (default: every stored image).",
        show_default=False,
    ),
]
Html = Annotated[
    Path | None,
    typer.Option("--html", help="Write the HTML report to this file (the same as --format html --out FILE)."),
]


def report(
    paths: Under = None,
    store: o.StoredFrom = None,
    models_: o.Models = "all",
    fmt: o.Format = "table",
    out: o.Out = None,
    html: Html = None,
    threshold: o.Threshold = None,
    top: o.Top = 10,
    show_matrix: o.ShowMatrix = False,
    show_timing: o.ShowTiming = False,
    show_confidence: o.ShowConfidence = None,
    synonyms: o.Synonyms = None,
    compare_top: o.CompareTop = 10,
    consensus_min: o.ConsensusMin = None,
) -> None:
    """Render stored results (every model's cells for every image) without running any model."""
    views = ViewFlags(
        top=top,
        threshold=threshold,
        show_matrix=show_matrix,
        show_timing=show_timing,
        show_confidence=show_confidence,
        synonyms=synonyms,
        compare_top=compare_top,
        consensus_min=consensus_min,
    ).views()
    if html is not None:
        if fmt not in ("table", "html") or (out is not None and out != html):
            raise UsageError("--html FILE is short for --format html --out FILE: give one or the other")
        fmt, out = "html", html
    check_format(fmt, out)
    # The HTML report shows tags, never a raw score map's values: those are not built (faster at archive size).
    stored = load_stored(store, paths, models_, score_values=fmt != "html")
    err.print(
        f"store: {stored.db.path}: {len(stored.models)} model(s) from {len(stored.results.options['runs'])} run(s)",
        highlight=False,
        soft_wrap=True,
    )
    try:
        emit(stored.results, fmt, out, views)
    finally:
        stored.db.close()
