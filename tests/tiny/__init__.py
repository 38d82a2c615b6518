"""Tiny randomly initialised models of the real architectures, built offline.

Each module here runs INSIDE a model venv (stdlib + that env's packages; never orchestrator)
as `python -m tests.tiny.<family> OUT_DIR`, and declares the env it needs as `ENV = "<env>"`.
tests/tiny_models.py runs them and caches their output; in a test session it builds the missing
models of one env together (`python -m tests.tiny FAMILY=OUT_DIR ...`, __main__.py).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

# What `python -m tests.tiny` prints before `built FAMILY` / `failed FAMILY` (a builder's own output may come between).
BATCH_PREFIX = "tests.tiny: "


def cli(build: Callable[[Path], None]) -> int:
    """The builders' command line: one argument, the output folder."""
    if len(sys.argv) != 2:
        main = sys.modules["__main__"].__spec__  # None when run as a file, not with -m
        print(f"usage: python -m {main.name if main else sys.argv[0]} OUT_DIR", file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    build(out)
    return 0
