"""The results store: one SQLite file of every cell, the single source of truth for every output.

db.py         ResultStore: writing cells as they arrive, reading them back in chunks
schema.py     the tables and their migrations
cellpack.py   a cell as stored: JSON text when small, else score maps as arrays over stored vocabularies, zstd
keys.py       the options key (which cells a re-run reuses)
location.py   where the store lives (the user's data folder, never an analysed folder)
legacy.py     stores an older mltag left inside analysed folders: read and merged, never written
documents.py  result documents streamed from the store (`from_run`, `from_store`)
labels.py     the user's labels (yes / no per tag, a per-photo "done") as ResultStore hands them out
"""

from orchestrator.errors import StoreError, StoreWriteError
from orchestrator.store.db import CellMeta, ResultStore
from orchestrator.store.keys import options_key
from orchestrator.store.labels import ImageLabels, Verdict, default_labeller
from orchestrator.store.location import default_store_path, legacy_stores, store_home
from orchestrator.store.schema import DONE_STATUSES, STORE_VERSION

__all__ = [
    "DONE_STATUSES",
    "STORE_VERSION",
    "CellMeta",
    "ImageLabels",
    "ResultStore",
    "StoreError",
    "StoreWriteError",
    "Verdict",
    "default_labeller",
    "default_store_path",
    "legacy_stores",
    "options_key",
    "store_home",
]
