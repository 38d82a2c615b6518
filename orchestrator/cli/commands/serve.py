"""`mltag serve`: a local web app to browse the stored results, label the truth and rank the models."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import options as o
from orchestrator.cli.choices import ViewFlags
from orchestrator.cli.console import err
from orchestrator.cli.stores import open_store
from orchestrator.errors import UsageError

Under = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Show the stored images recorded under these files or folders (default: every stored image).",
        show_default=False,
    ),
]
Host = Annotated[
    str,
    typer.Option(
        "--host",
        help="Address to listen on. Any other than 127.0.0.1 / localhost needs the random token printed in the URL.",
    ),
]
Port = Annotated[int | None, typer.Option("--port", help="Port (default: a free one).")]
Open = Annotated[bool, typer.Option("--open", help="Open the app in the default browser.")]
Who = Annotated[str | None, typer.Option("--who", help="Name recorded with each label (default: your login name).")]


def serve(
    paths: Under = None,
    store: o.StoredFrom = None,
    host: Host = "127.0.0.1",
    port: Port = None,
    open_browser: Open = False,
    who: Who = None,
    synonyms: o.Synonyms = None,
) -> None:
    """Browse the stored results in a local web app, label your photos' true tags, and see the models ranked."""
    from orchestrator.compare import Normaliser
    from orchestrator.serve import server

    views = ViewFlags(synonyms=synonyms).views()
    db = open_store(store, paths or [], create=False)
    try:
        if not db.models():
            raise UsageError(f"the results store {db.path} holds no results yet: `mltag analyze PATHS` fills it")
        under = [Path(p) for p in paths] if paths else None
        if under is not None and next(db.image_rows(under), None) is None:
            raise UsageError(
                f"no stored image under {', '.join(map(str, under))} in {db.path}: `mltag serve` "
                "without PATHS shows every stored image"
            )

        def say(text: str) -> None:
            err.print(text, highlight=False, soft_wrap=True)

        served = server.prepare(db, under, views.normaliser or Normaliser(), who=who, host=host, say=say)
        server.run(served, host, port, open_browser, say)
    finally:
        db.close()
