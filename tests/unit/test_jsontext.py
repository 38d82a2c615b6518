"""orchestrator/jsontext.py: orjson's speed, the standard library's JSON: the same values come
back, NaN and infinities survive as they did, and text the standard library wrote still reads."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from pathlib import Path

from orchestrator import jsontext


@dataclasses.dataclass
class _Point:
    x: int = 1


def _stdlib(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def test_the_same_json_as_the_standard_library_up_to_white_space() -> None:
    value = {
        "scores": {f"tag_{i}": i / 7 for i in range(50)},
        "name": 'Fabrik \u00e9\u2028\U0001f3ed "q"',
        "ints": {1: "a"},
        "path": Path("/photos/x.jpg"),
        "point": _Point(),
        "tuple": (1, 2.5),
        "when": datetime.datetime(2026, 1, 2, 3, 4, 5),
        "none": None,
        "flag": True,
    }
    text = jsontext.dumps(value)
    assert json.loads(text) == json.loads(_stdlib(value))
    assert json.loads(text)["point"] == "_Point(x=1)" and json.loads(text)["when"] == "2026-01-02 03:04:05"
    assert "\n" not in text


def test_nan_and_infinity_are_kept_not_nulled() -> None:
    value = {"raw": {"scores": {"a": float("nan"), "b": 0.5}}, "list": [float("inf"), -float("inf")]}
    back = jsontext.loads(jsontext.dumps(value))
    assert math.isnan(back["raw"]["scores"]["a"]) and back["raw"]["scores"]["b"] == 0.5
    assert back["list"] == [float("inf"), -float("inf")]


def test_text_the_standard_library_wrote_reads_back() -> None:
    for value in ({"a": [1, 2.5, "x"]}, {"n": float("nan")}):
        text = _stdlib(value)
        back = jsontext.loads(text)
        assert _stdlib(back) == text


def test_a_name_with_a_lone_surrogate_is_written_as_the_standard_library_writes_it() -> None:
    name = b"Fabrik_\xe9.jpg".decode("utf-8", "surrogateescape")  # a non-UTF-8 name, as os.fsdecode gives it
    value = {"name": name, "scores": {"a": 0.5}}
    assert jsontext.dumps(value) == _stdlib(value)
