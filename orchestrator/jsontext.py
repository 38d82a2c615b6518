"""JSON text of results, fast: the store's cells and the JSON outputs' images.

orjson encodes a WD14 cell (10,861 raw scores) in ~1-2 ms where the standard library takes ~17
(the orchestrator's largest cost per photo) and reads it back ~3x faster. The text is the same
JSON up to white space, with two exceptions handled here: orjson would write a NaN or an infinity
as null, and refuses a str with a lone surrogate (a name decoded with surrogateescape); such a
value is written by the standard library, as before (NaN / Infinity literals, which `loads` reads
back).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

# What json.dumps(default=str) does: keys that are not strings become strings; a dataclass or a
# datetime goes to default (str) rather than to orjson's own encoding of it.
_AS_JSON_DOES = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def dumps(value: Any) -> str:
    """`value` as JSON on one line (non-ASCII kept as is; unknown types as their str)."""
    if not _has_nonfinite(value):
        try:
            return orjson.dumps(value, default=str, option=_AS_JSON_DOES).decode()
        except orjson.JSONEncodeError:  # a str orjson refuses (a lone surrogate): as before, below
            pass
    return json.dumps(value, ensure_ascii=False, default=str)


def loads(text: str | bytes) -> Any:
    """JSON text as written by `dumps` or by the standard library (NaN / Infinity included)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _has_nonfinite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(map(_has_nonfinite, value.values()))
    if isinstance(value, list | tuple):
        return any(map(_has_nonfinite, value))
    return False
