"""A cell as the store keeps it: JSON text when small, else a packed, compressed blob.

A tagger's cell is mostly its raw scores: {term: score} over the model's whole vocabulary (10,861
for WD14 v3), the same terms in every cell. Packed, each such *score map* becomes a reference to
its vocabulary (stored once per store, content-addressed: `vocabularies`, see schema.py) and an
array of its values: float32 when every value is exactly a float32 (what a float32 model output
becomes in Python: WD14's ONNX outputs, CLIP's torch float32 tensors), else float64 (a rounded
score, a float64 model): the values read back are the very floats written, bit for bit, NaN and
infinities included. Everything else (tags, captions, raw text, small maps) stays JSON, exactly as
before. The whole is compressed with zstandard (the arrays as they are: byte-shuffling them first
was measured to gain nothing, zstd's entropy coding of a block's bytes does not see their order).

Blob layout (version 1): b"MC" + version byte + zstd frame of:
    u32 skeleton length | skeleton JSON | u32 maps length | maps JSON | the arrays (little-endian), one after another
where the skeleton is the cell with each score map replaced by null, and maps lists for each one
[path from the cell's root, vocabulary id (hex), "f" or "d"]. A map's length is its vocabulary's.

A cell of the older format (JSON text in the same column) reads as before: `unpack` takes either.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
import threading
from array import array
from collections.abc import Callable
from typing import Any

import orjson
import zstandard

from orchestrator import jsontext

MAGIC = b"MC\x01"
MIN_TERMS = 32  # a smaller {term: float} map stays JSON: nothing to gain
PACK_OVER_BYTES = 1024  # JSON text up to this size stays text (readable in any SQLite tool)
LEVEL = 3  # zstd level: level 19 saves a few % more at ~10x the time per cell

Path = list[str | int]
# What a damaged blob raises on the way back (the store turns it into a StoreError)
DAMAGED = (zstandard.ZstdError, ValueError, struct.error, KeyError, IndexError, TypeError, UnicodeDecodeError)
VocabLookup = Callable[[bytes], list[str]]


class _Local(threading.local):
    """zstd contexts are not thread-safe: one pair per thread (runs write from one thread per model)."""

    def __init__(self) -> None:
        self.c = zstandard.ZstdCompressor(level=LEVEL)
        self.d = zstandard.ZstdDecompressor()


_local = _Local()


def vocabulary_id(terms: list[str]) -> bytes:
    """A vocabulary's id: the first 16 bytes of the sha256 of its terms as JSON (content-addressed:
    the same terms in any store, any process, have the same id)."""
    for known, vid in _recent:  # every cell of a model has the same terms: compared, not hashed again
        if known == terms:
            return vid
    vid = hashlib.sha256(_terms_json(terms)).digest()[:16]
    _recent.insert(0, (terms, vid))
    del _recent[RECENT:]
    return vid


RECENT = 8
_recent: list[tuple[list[str], bytes]] = []  # the last vocabularies seen (a list: shared by threads, GIL-safe)


def _terms_json(terms: list[str]) -> bytes:
    try:
        return orjson.dumps(terms)
    except orjson.JSONEncodeError:  # a lone surrogate: the standard library writes it
        return json.dumps(terms, ensure_ascii=False).encode("utf-8", "surrogatepass")


def pack_terms(terms: list[str]) -> bytes:
    return _local.c.compress(_terms_json(terms))


def unpack_terms(blob: bytes) -> list[str]:
    terms: list[str] = jsontext.loads(_local.d.decompress(blob).decode("utf-8", "surrogatepass"))
    return terms


def _is_score_map(value: Any) -> bool:
    # type() exactly: a bool or int score, or a float subclass, would not read back as itself
    return (
        isinstance(value, dict)
        and len(value) >= MIN_TERMS
        and set(map(type, value.values())) == {float}
        and set(map(type, value)) == {str}
    )


def _find_maps(value: Any, path: Path, out: list[tuple[Path, dict[str, float]]]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str:  # JSON writes it as text: left as it is, in the JSON
                continue
            if _is_score_map(item):
                out.append(([*path, key], item))
            elif isinstance(item, dict | list):
                _find_maps(item, [*path, key], out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict | list):
                _find_maps(item, [*path, i], out)


def _replace(root: Any, path: Path, new: Any) -> Any:
    """A copy of `root` with the value at `path` replaced (containers on the path copied, the rest shared)."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(root, dict):
        out_d = dict(root)
        out_d[head] = _replace(root[head], rest, new)
        return out_d
    out_l = list(root)
    out_l[head] = _replace(root[head], rest, new)  # type: ignore[index]
    return out_l


def _set(root: Any, path: Path, value: Any) -> None:
    for key in path[:-1]:
        root = root[key]
    root[path[-1]] = value


def _values(values: list[float]) -> tuple[str, array[float]]:
    """The values as float32 when that keeps every bit of them, else as float64."""
    try:
        singles = array("f", values)
    except OverflowError:  # beyond float32's range
        return "d", array("d", values)
    # == is exact here (float32 -> float64 keeps the sign of a zero) but never true of a NaN: then bits
    if singles.tolist() == values:
        return "f", singles
    doubles = array("d", values)
    if array("d", singles).tobytes() == doubles.tobytes():
        return "f", singles
    return "d", doubles


def pack(cell: dict[str, Any]) -> tuple[str | bytes, dict[bytes, list[str]]]:
    """The stored form of a cell, and the vocabularies it refers to (id -> terms).

    A small cell with no score map stays JSON text, as an older mltag wrote it."""
    maps: list[tuple[Path, dict[str, float]]] = []
    _find_maps(cell, [], maps)
    if not maps:
        text = jsontext.dumps(cell)
        if len(text) <= PACK_OVER_BYTES:
            return text, {}
    skeleton: Any = cell
    described: list[list[Any]] = []
    arrays: list[bytes] = []
    vocabularies: dict[bytes, list[str]] = {}
    for path, scores in maps:
        skeleton = _replace(skeleton, path, None)
        terms = list(scores)
        vid = vocabulary_id(terms)
        vocabularies[vid] = terms
        code, values = _values(list(scores.values()))
        if sys.byteorder != "little":
            values.byteswap()
        arrays.append(values.tobytes())
        described.append([path, vid.hex(), code])
    head = jsontext.dumps(skeleton).encode("utf-8", "surrogatepass")
    desc = jsontext.dumps(described).encode()
    body = b"".join([struct.pack("<I", len(head)), head, struct.pack("<I", len(desc)), desc, *arrays])
    return MAGIC + _local.c.compress(body), vocabularies


def unpack(stored: str | bytes, vocabulary: VocabLookup, values: bool = True) -> dict[str, Any]:
    """A stored cell (JSON text, or a packed blob) as the dict the runner gave.

    values=False, for views that never show a score map's values (the HTML report, the ranking): each
    packed map comes back as its labels only ({term: None}, one dict shared by every cell of that
    vocabulary: read it, never change it), which spares building a WD-size tagger's 10,861 scores
    per cell; a closed-vocabulary model's label set is all the comparison reads of it."""
    if isinstance(stored, str):
        cell: dict[str, Any] = jsontext.loads(stored)
        return cell
    if stored[:3] != MAGIC:
        raise ValueError(f"not a packed cell (starts {bytes(stored[:3])!r})")
    body = _local.d.decompress(stored[3:])
    (n,) = struct.unpack_from("<I", body, 0)
    cell = jsontext.loads(body[4 : 4 + n].decode("utf-8", "surrogatepass"))
    at = 4 + n
    (m,) = struct.unpack_from("<I", body, at)
    described = jsontext.loads(body[at + 4 : at + 4 + m])
    at += 4 + m
    for path, vid, code in described:
        terms = vocabulary(bytes.fromhex(vid))
        scores = array(code)
        size = len(terms) * scores.itemsize
        if not values:
            at += size
            _set(cell, path, _labels_only(vid, terms))
            continue
        scores.frombytes(body[at : at + size])
        at += size
        if sys.byteorder != "little":
            scores.byteswap()
        _set(cell, path, dict(zip(terms, scores.tolist(), strict=True)))
    return cell


_LABELS: dict[str, dict[str, None]] = {}  # vocabulary id -> its labels-only map (a few per store)


def _labels_only(vid: str, terms: list[str]) -> dict[str, None]:
    labels = _LABELS.get(vid)
    if labels is None:
        if len(_LABELS) >= 64:  # bounded: vocabularies are few, but a process may open many stores
            _LABELS.clear()
        labels = _LABELS[vid] = dict.fromkeys(terms)
    return labels


def layout(stored: str | bytes) -> list[tuple[list[str | int], str]]:
    """Where a stored cell's score maps are, and how their values are kept ("f" float32, "d"
    float64): [] for a JSON text cell. For `mltag store stats` and tests."""
    if isinstance(stored, str):
        return []
    body = _local.d.decompress(stored[3:])
    (n,) = struct.unpack_from("<I", body, 0)
    (m,) = struct.unpack_from("<I", body, 4 + n)
    return [(path, code) for path, _, code in jsontext.loads(body[8 + n : 8 + n + m])]
