"""Where things live.

mltag runs in one of two layouts, told apart by `from_checkout()`:

- a source checkout (a clone, or an unpacked source archive, installed editable or not): the folder
  above orchestrator/ holds the pyproject.toml that names mltag. What mltag writes for its envs goes
  under <checkout>/.cache/ (the developers' layout: one checkout, its own envs).
- an install (a wheel: `uv tool install .`, `pipx install .`, `pip install .`): orchestrator/,
  runners/, schemas/ and envs/ (the registry's model.toml files, the .in files and locks) are package
  data in the install's site folder, read only; everything mltag writes goes to the user cache folder.

`PROJECT_ROOT` is the folder that holds orchestrator/, runners/, schemas/ and envs/ in both layouts
(the checkout, or the site folder). The folders mltag writes, and the variables that move them:

    MLTAG_CACHE      mltag's user cache folder (default: platformdirs' user cache folder, ~/.cache/mltag on
                     Linux): thumbnails and browse indexes; when installed, also everything under MLTAG_CACHE_DIR.
    MLTAG_CACHE_DIR  the envs' folder alone: model venvs, uv's cache, runner logs, adapters' derived caches,
                     tiny test models (default: <checkout>/.cache in a checkout, else MLTAG_CACHE's folder).
    UV_CACHE_DIR     uv's cache (default: <MLTAG_CACHE_DIR>/uv, on the venvs' filesystem for hardlinks).
    MLTAG_HOME       the results store's folder (orchestrator/store/location.py): user data, not a cache.

`mltag paths` prints each of them and where it came from.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tomllib
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENVS_DIR = PROJECT_ROOT / "envs"
REQUIREMENTS_DIR = ENVS_DIR / "requirements"
DATA_DIR = Path(__file__).resolve().parent / "data"
DIST_NAME = "mltag"


@functools.cache
def from_checkout(root: Path = PROJECT_ROOT) -> bool:
    """True when `root` is mltag's source tree: a pyproject.toml there whose [project] name is mltag.

    Not `.git`: an unpacked source archive has none and is still a source tree. Not the file alone:
    a badly packed wheel may drop a pyproject.toml into site-packages, but it names its own project.
    A wheel never ships mltag's pyproject.toml, so an install is never taken for a checkout."""
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False
    project = data.get("project")
    return isinstance(project, dict) and project.get("name") == DIST_NAME


def version() -> str:
    """mltag's version: an install's metadata (importlib.metadata), else orchestrator.__version__ (a
    checkout, where an editable install's metadata may be older than the source). The wheel takes its
    version from orchestrator.__version__ (pyproject.toml), so both agree for an install."""
    from orchestrator import __version__

    if from_checkout():
        return __version__
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version(DIST_NAME)
    except PackageNotFoundError:  # the code without its metadata (copied, or on PYTHONPATH)
        return __version__


def user_cache_home() -> Path:
    """mltag's user cache folder: MLTAG_CACHE, else the platform's user cache folder (~/.cache/mltag on
    Linux). Thumbnails and browse indexes (`mltag serve`, the HTML report), and an install's envs.
    Never inside an analysed folder."""
    import platformdirs

    home = os.environ.get("MLTAG_CACHE")
    return Path(home).expanduser() if home else platformdirs.user_cache_path(DIST_NAME, appauthor=False)


def cache_root() -> Path:
    """Venvs, uv's cache, tiny test models and runner logs: MLTAG_CACHE_DIR, else <checkout>/.cache in a
    checkout, else the user cache folder (an install's site folder is never written)."""
    explicit = os.environ.get("MLTAG_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser().resolve()
    return (PROJECT_ROOT / ".cache").resolve() if from_checkout() else user_cache_home().resolve()


def thumbnails_dir() -> Path:
    return user_cache_home() / "thumbnails"


def browse_dir() -> Path:
    """`mltag serve`'s browse indexes (orchestrator/serve/index.py)."""
    return user_cache_home() / "browse"


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


def runner_code_dir() -> Path:
    """The folder a model venv's mltag.pth names, so that `python -m runners.host` finds runners/ and
    schemas/ there. A checkout: its root. An install: a folder (made by `link_runner_code`) of links to
    the install's runners/ and schemas/ only: the site folder itself would put every orchestrator
    dependency on the model env's path, where a package the env lacks would be taken silently from
    the orchestrator's venv."""
    if from_checkout():
        return PROJECT_ROOT
    tag = hashlib.sha256(str(PROJECT_ROOT).encode()).hexdigest()[:12]
    return cache_root() / "code" / tag  # one per install: two installs may share a cache folder


def link_runner_code() -> Path:
    """Make `runner_code_dir()` (an install: its links to runners/ and schemas/) and return it; where no
    symbolic link can be made (e.g. Windows without the privilege), the install's site folder."""
    code = runner_code_dir()
    if code == PROJECT_ROOT:
        return code
    try:
        code.mkdir(parents=True, exist_ok=True)
        for package in ("runners", "schemas"):
            link, target = code / package, PROJECT_ROOT / package
            if not (link.is_symlink() and link.resolve() == target.resolve()):
                link.unlink(missing_ok=True)
                link.symlink_to(target, target_is_directory=True)
    except OSError:
        return PROJECT_ROOT
    return code


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
