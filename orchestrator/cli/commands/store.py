"""`mltag store stats | vacuum`: what the results store holds, and giving its free space back."""

from __future__ import annotations

from rich.table import Table

from orchestrator.cli import options as o
from orchestrator.cli.console import err, stdout
from orchestrator.cli.stores import open_store


def _size(n: int | float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # unreachable; mypy wants a return


def stats(store: o.StoredFrom = None) -> None:
    """Size per model (its cells, and its vocabularies stored once), cells, images and the file's size."""
    db = open_store(store, [], create=False)
    with db:
        info = db.stats()
    table = Table(title=f"mltag store {info['path']}")
    for col in ("model", "cells", "done", "packed", "cells size", "per cell", "vocabularies"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for m in info["models"]:
        table.add_row(
            m["model"],
            str(m["cells"]),
            str(m["done"]),
            str(m["packed"]),
            _size(m["cell_bytes"]),
            _size(m["cell_bytes"] / max(m["cells"], 1)),
            f"{m['vocabularies']} ({_size(m['vocabulary_bytes'])})",
        )
    out = stdout()
    out.print(table)
    out.print(
        f"images: {info['images']} ({info['image_paths']} paths), runs: {info['runs']}, files in the stat "
        f"cache: {info['file_stats']}",
        highlight=False,
    )
    out.print(
        f"file: {_size(info['file_bytes'])} (+ {_size(info['wal_bytes'])} write-ahead log), of which "
        f"{_size(info['free_bytes'])} free" + (": `mltag store vacuum` gives it back" if info["free_bytes"] else ""),
        highlight=False,
    )


def vacuum(store: o.StoredFrom = None) -> None:
    """Compact the store: pack any cell still stored as JSON text, and give the file's free space back.
    Needs as much free disk space as the store's size while it runs (SQLite VACUUM copies the file)."""
    db = open_store(store, [], create=False)
    with db:
        packed, saved = db.vacuum()
        size = db.path.stat().st_size
    err.print(
        f"store: {db.path}: {packed} cell(s) packed, {_size(saved)} given back; now {_size(size)}",
        highlight=False,
        soft_wrap=True,
    )
