"""Cell status names: one cell is one (image, model) result."""

from __future__ import annotations

from enum import StrEnum


class CellStatus(StrEnum):
    OK = "ok"  # the model produced tags or a caption
    NO_TAGS = "no_tags"  # the model ran but produced nothing usable (empty, looping output)
    TIMEOUT = "timeout"  # the runner passed its deadline and was killed
    CRASHED = "crashed"  # the runner died (EOF, exit code, signal, OOM kill)
    ERROR = "error"  # the adapter raised an exception for this image
    BAD_IMAGE = "bad_image"  # the image could not be decoded (or is unsafe to decode)
    SKIPPED = "skipped"  # never attempted: env missing, weights missing, restart budget spent


# Cells that count as success for the exit code.
SUCCESS = frozenset({CellStatus.OK, CellStatus.NO_TAGS})
