"""Opening the results store for a command, and the one loader of stored results that `report`,
`judge` and `eval` share (open, check the model names, build the document)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from orchestrator.cli.console import err
from orchestrator.errors import UsageError

if TYPE_CHECKING:
    from orchestrator.document import Results
    from orchestrator.store import ResultStore


def open_store(explicit: Path | None, paths: list[Path], create: bool) -> ResultStore:
    """The results store: --store, else the one in the user's data folder (MLTAG_HOME overrides). A store
    an older mltag left inside the analysed folders is read (never written) and merged into it."""
    from orchestrator.store import ResultStore, default_store_path, legacy_stores

    path = explicit or default_store_path()
    legacy = legacy_stores(paths or [Path.cwd()]) if explicit is None else []
    db = ResultStore(path, create=create or bool(legacy))
    for old in legacy:
        merged = db.import_store(old)
        if merged is not None:
            err.print(
                f"found the results store of an older mltag in {old}: {merged} result(s) merged into "
                f"{db.path}, where results now go ({old} was only read; you may delete it)",
                highlight=False,
                soft_wrap=True,
            )
    return db


@dataclass
class Stored:
    """Stored results for a command: the open store, the models asked for, their document."""

    db: ResultStore
    models: list[str]
    results: Results
    under: list[Path] | None


def load_stored(
    store: Path | None, paths: list[Path] | None, models: str, exclude: str | None = None, score_values: bool = True
) -> Stored:
    """The store, the stored models asked for (checked), and the results under `paths` (score_values:
    store/documents.py from_store)."""
    from orchestrator.store.documents import from_store

    db = open_store(store, paths or [], create=False)
    stored = [name for name in db.models() if name != exclude]
    if not stored:
        raise UsageError(f"the results store {db.path} holds no results yet: `mltag analyze PATHS` fills it")
    names = stored if models == "all" else [m.strip() for m in models.split(",") if m.strip()]
    unknown = [n for n in names if n not in stored]
    if unknown:
        raise UsageError(f"no results for model(s) {', '.join(unknown)} in {db.path} (stored: {', '.join(stored)})")
    under = [Path(p) for p in paths] if paths else None
    if under is not None and next(db.image_rows(under), None) is None:
        raise UsageError(
            f"no stored image under {', '.join(map(str, under))} in {db.path}: `mltag report` lists every stored image"
        )
    return Stored(db, names, from_store(db, under, names, score_values), under)


KEPT_NAMED = 5  # kept results named on stderr; the JSON lists them all (failures_kept)


def store_summary(analysis: Any) -> None:
    """What the run reused from the store and what it computed; this run's failures, and those whose
    photo shows an earlier done result (the store never replaces a done cell by a failed one), which
    the outputs alone would show as ok while the run exits 1."""
    reused = sum(analysis.reused.values())
    computed = len(analysis.unique) * len(analysis.reported_models) - reused
    failed = f", {analysis.failed_now} failed" if analysis.failed_now else ""
    err.print(
        f"store: {analysis.store.path}: {reused} result(s) reused, {computed} computed{failed} (run {analysis.run_id})",
        highlight=False,
        soft_wrap=True,
    )
    if analysis.kept_count:
        named = "; ".join(f"{k['model']} on {k['path']}: {k['status']}" for k in analysis.failures_kept[:KEPT_NAMED])
        more = analysis.kept_count - min(KEPT_NAMED, len(analysis.failures_kept))
        err.print(
            f"[yellow]{analysis.kept_count} result(s) failed in this run but the store kept their earlier "
            f"done result, which the outputs show: {escape(named)}"
            + (f" (and {more} more: failures_kept in --format json)" if more else "")
            + "[/]",
            highlight=False,
            soft_wrap=True,
        )
