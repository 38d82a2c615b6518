"""Where the results store lives: the user's data folder, never an analysed folder."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

STORE_DIR = ".mltag"  # where an older mltag kept its store: inside the analysed folder
STORE_NAME = "results.sqlite"


# -- where the store lives ---------------------------------------------------------------------------
def store_home() -> Path:
    """The folder of mltag's user data: MLTAG_HOME, else the platform's user data folder
    (~/.local/share/mltag on Linux, ~/Library/Application Support/mltag on macOS, %LOCALAPPDATA%\\mltag
    on Windows). Never inside an analysed folder: archives are read, never written."""
    import platformdirs

    home = os.environ.get("MLTAG_HOME")
    return Path(home).expanduser() if home else platformdirs.user_data_path("mltag", appauthor=False)


def default_store_path() -> Path:
    """The one store every archive shares (images are keyed by content, every path is recorded)."""
    return store_home() / STORE_NAME


def legacy_stores(paths: Iterable[Path]) -> list[Path]:
    """Stores an older mltag left inside the analysed folders (`<root>/.mltag/results.sqlite`): in the
    analysed root (the folder given, a file's parent folder, or the common parent of several paths)
    or a folder above it. Read and imported, never written."""
    resolved = [Path(os.path.abspath(Path(p).expanduser())) for p in paths]
    if not resolved:
        return []
    if len(resolved) == 1:
        root = resolved[0] if resolved[0].is_dir() else resolved[0].parent
    else:
        root = Path(os.path.commonpath([str(p) for p in resolved]))
        if not root.is_dir():
            root = root.parent
    found = [folder / STORE_DIR / STORE_NAME for folder in (root, *root.parents)]
    return [p for p in found if p.is_file()]
