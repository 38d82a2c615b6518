"""`mltag eval`: precision, recall and F1 of each model against the user's own labels."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.console import Console

from orchestrator.cli import options as o
from orchestrator.cli.choices import ViewFlags
from orchestrator.cli.console import err, stdout
from orchestrator.cli.output import write_text
from orchestrator.cli.stores import load_stored
from orchestrator.document import Document, Results
from orchestrator.errors import LabelsError, UsageError

Labels = Annotated[
    Path | None,
    typer.Option(
        "--labels",
        help="CSV: image path (relative to the CSV) or sha256, then its true tags, comma-separated. Default: "
        "the labels in the results store (the photos marked done in `mltag serve`, or imported with "
        "`mltag labels import`).",
    ),
]
Under = Annotated[
    list[Path] | None,
    typer.Argument(help="Evaluate the stored images under these files or folders (default: all).", show_default=False),
]
Saved = Annotated[Path | None, typer.Option("--results", help="A saved `--format json` document instead of the store.")]
EvalFormat = Annotated[str, typer.Option("--format", "-f", help="table | json | csv")]


def evaluate(
    labels: Labels = None,
    paths: Under = None,
    store: o.StoredFrom = None,
    results: Saved = None,
    synonyms: o.Synonyms = None,
    fmt: EvalFormat = "table",
    out: o.Out = None,
) -> None:
    """Precision, recall and F1 of each model against your own labels: which model tags your archive best."""
    from orchestrator.compare import Normaliser
    from orchestrator.compare.evaluate import evaluate as score
    from orchestrator.compare.evaluate import read_labels
    from orchestrator.report.evaluation_view import evaluation_table
    from orchestrator.report.flat import evaluation_csv
    from orchestrator.report.output import open_output

    if fmt not in ("table", "json", "csv"):
        raise UsageError(f"unknown --format {fmt!r} (choose from table, json, csv)")
    if results is not None and (store is not None or paths):
        raise UsageError("--results FILE replaces the store: give it alone, without --store or PATHS")
    if results is not None and labels is None:
        raise UsageError("--results FILE needs --labels FILE (the store's labels go with the store's results)")
    normaliser = ViewFlags(synonyms=synonyms).views().normaliser or Normaliser()
    if labels is None:
        evaluation = _stored_labels(store, paths, normaliser)
    else:
        rows = read_labels(labels)
        if results is not None:
            document = _saved_document(results)
        else:
            stored = load_stored(store, paths, "all")
            document = _labelled_document(stored.results, {row.key for row in rows})
            stored.db.close()
        evaluation = score(document, rows, normaliser)
        if not evaluation["labelled"]:
            raise UsageError(
                f"none of the {len(rows)} label row(s) in {labels} names an image in the results "
                f"(first: {rows[0].ref!r}): paths are relative to the CSV's folder, or give the sha256"
            )
    if fmt == "table":
        with open_output(out) as stream:
            (Console(file=stream, width=160) if out else stdout()).print(evaluation_table(evaluation))
    else:
        write_text(json.dumps(evaluation, indent=2) if fmt == "json" else evaluation_csv(evaluation), out)
    if out:
        err.print(f"wrote {out}")


def _stored_labels(store: Path | None, paths: list[Path] | None, normaliser: Callable[[str], str]) -> dict[str, Any]:
    """The evaluation on the store's own labels (the photos marked done), as `mltag serve` ranks them."""
    from orchestrator.store.documents import evaluate_store

    stored = load_stored(store, paths, "all")
    try:
        if not stored.db.done_sha256s():
            raise LabelsError(
                f"no labelled photos in the results store {stored.db.path}: label some in `mltag serve` "
                "(mark each one done), or `mltag labels import labels.csv`, or pass --labels "
                "labels.csv"
            )
        evaluation = evaluate_store(stored.db, normaliser, stored.under)
    finally:
        stored.db.close()
    if not evaluation["labelled"]:
        where = (
            f"is under {', '.join(map(str, paths))}: give other PATHS, or none to use every labelled photo"
            if paths
            else "has results: `mltag analyze` the labelled photos first"
        )
        raise UsageError(f"none of the labelled photo(s) in the results store {stored.db.path} {where}")
    return evaluation


def _labelled_document(stored: Results, keys: set[str]) -> Document:
    """The stored document with the cells of labelled images only (keys: sha256s or resolved paths):
    every image is listed (unlabelled ones are counted), only the labelled keep their results."""
    from orchestrator.compare.evaluate import evaluated_part

    images = []
    for image in stored.images():
        if image["sha256"] not in keys and str(Path(image["path"]).resolve()) not in keys:
            image["results"] = {}
        else:
            image["results"] = {m: evaluated_part(c) for m, c in image["results"].items()}
        images.append(image)
    return cast(Document, {**stored.head, "models": stored.models, "images": images})  # see Results.document


def _saved_document(path: Path) -> Document:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"cannot read --results {path}: {exc}; it must be the output of `mltag analyze --format json`"
        ) from exc
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise UsageError(
            f"--results {path} is not an mltag result document (no 'images' list): save one with "
            "`mltag analyze PATHS --format json --out FILE`"
        )
    return cast(Document, document)  # an mltag document (an images list): read as the schema says
