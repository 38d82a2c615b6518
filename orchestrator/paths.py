"""Where things live. The project root holds envs/ and runners/; caches go under .cache/."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENVS_DIR = PROJECT_ROOT / "envs"
REQUIREMENTS_DIR = ENVS_DIR / "requirements"
DATA_DIR = Path(__file__).resolve().parent / "data"


def cache_root() -> Path:
    """Venvs, uv's cache, tiny test models and runner logs (MLTAG_CACHE_DIR overrides)."""
    return Path(os.environ.get("MLTAG_CACHE_DIR") or PROJECT_ROOT / ".cache").resolve()


def user_cache_home() -> Path:
    """Thumbnails and browse indexes (`mltag serve`, the HTML report): MLTAG_CACHE, else the platform's
    user cache folder (~/.cache/mltag on Linux). Never inside an analysed folder."""
    import platformdirs

    home = os.environ.get("MLTAG_CACHE")
    return Path(home).expanduser() if home else platformdirs.user_cache_path("mltag", appauthor=False)


def thumbnails_dir() -> Path:
    return user_cache_home() / "thumbnails"


def venvs_dir() -> Path:
    return cache_root() / "venvs"


def uv_cache_dir() -> Path:
    # Same filesystem as the venvs, so uv hardlinks instead of copying torch into every env.
    return Path(os.environ.get("UV_CACHE_DIR") or cache_root() / "uv")


def logs_dir() -> Path:
    return cache_root() / "logs"


def adapter_cache_dir() -> Path:
    """Derived caches adapters may keep (e.g. CLIP text embeddings of a vocabulary)."""
    return cache_root() / "adapters"


def read_vocabulary(ref: str, model_folder: Path) -> list[str]:
    """A built-in vocabulary name (orchestrator/data/<name>_vocabulary.txt) or a file path.

    One term per line; blank lines and `#` comments are ignored; duplicates dropped.
    """
    builtin = DATA_DIR / f"{ref}_vocabulary.txt"
    path = builtin if builtin.exists() else (model_folder / ref).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"vocabulary {ref!r} not found (looked for {builtin} and {path})")
    terms: list[str] = []
    for line in path.read_text().splitlines():
        term = line.split("#", 1)[0].strip()
        if term and term not in terms:
            terms.append(term)
    return terms
