"""mkdocs hooks (mkdocs.yml `hooks:`): the checkout's root on sys.path, so that the pages generated at build
time import this checkout's code (docs/scripts/gen_pages.py reads the registry; mkdocs-click loads the CLI
from docs/scripts/cli_command.py) whether or not mltag is installed in the venv that runs mkdocs. In
on_config, not at import: mkdocs restores sys.path after loading a hook module."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def on_config(config: Any) -> Any:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return config
