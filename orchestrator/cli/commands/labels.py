"""`mltag labels export|import`: the store's labels as the labels CSV that `mltag eval --labels` reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import options as o
from orchestrator.cli.console import err
from orchestrator.errors import LabelsError

LabelsFile = Annotated[
    Path,
    typer.Argument(
        help="CSV: image path (relative to the CSV) or sha256, then its true "
        "tags, comma-separated (the format `mltag eval --labels` reads).",
        show_default=False,
    ),
]
_SHA256 = re.compile(r"[0-9a-f]{64}")  # read_labels' key for a sha256 (lower-cased) or a hashed file
Who = Annotated[str | None, typer.Option("--who", help="Who the labels are recorded for (default: your login name).")]


def export_labels(out: o.Out = None, store: o.StoredFrom = None) -> None:
    """Write the photos marked done, with their yes tags, as a labels CSV keyed by sha256 (moved files keep
    their labels; `mltag report --format csv` lists each sha256's path)."""
    from orchestrator.cli.stores import open_store
    from orchestrator.compare.evaluate import write_labels
    from orchestrator.report.output import open_output

    db = open_store(store, [], create=False)
    try:
        with open_output(out) as stream:
            written = write_labels(db.label_rows(), stream)
    finally:
        db.close()
    err.print(
        f"{written} labelled photo(s) from {db.path}" + (f" written to {out}" if out else ""),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def import_labels(labels: LabelsFile, store: o.StoredFrom = None, who: Who = None) -> None:
    """Read a labels CSV into the store: each image's tags are its complete truth set (yes), an earlier yes
    not listed becomes no, and the image is marked done."""
    from orchestrator.cli.stores import open_store
    from orchestrator.compare.evaluate import read_labels
    from orchestrator.images import display_path
    from orchestrator.store import default_labeller

    rows = read_labels(labels)
    db = open_store(store, [], create=False)
    try:
        truth: dict[str, set[str]] = {}
        unmatched: list[str] = []
        for row in rows:
            # a key is a sha256 (given, or the hash of an existing file), else the path of a file that is
            # gone: the image the store last saw there
            sha = row.key if _SHA256.fullmatch(row.key) else db.image_at(display_path(row.key))
            if sha is None:
                unmatched.append(row.ref)
            else:
                truth.setdefault(sha, set()).update(row.tags)
        if not truth:
            raise LabelsError(
                f"none of the {len(rows)} row(s) of {labels} names an image (first: {rows[0].ref!r}): "
                "paths are relative to the CSV's folder, or give the sha256"
            )
        imported = db.import_labels(truth, who or default_labeller())
        unknown = len(set(truth) - set(db.paths_of(truth)))
    finally:
        db.close()
    err.print(
        f"{imported} photo(s) labelled and marked done in {db.path}"
        + (f"; {unknown} of them are not in the store yet (`mltag analyze` them)" if unknown else ""),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if unmatched:
        more = f" and {len(unmatched) - 10} more" if len(unmatched) > 10 else ""
        err.print(
            f"skipped {len(unmatched)} row(s) naming no file and no stored image: {', '.join(unmatched[:10])}{more}",
            style="yellow",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
