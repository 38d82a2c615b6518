"""The compact store (orchestrator/store/cellpack.py, its schema migration): a cell read back is exactly the
dict the store returned before (JSON text), bit for bit, for every kind of cell; score maps are
kept as float32 exactly when that loses nothing; an older store is converted in place, in one
transaction, and its format still reads."""

from __future__ import annotations

import math
import random
import sqlite3
import struct
import time
from array import array
from pathlib import Path
from typing import Any

import msgpack
import pytest

from orchestrator import jsontext
from orchestrator.store import STORE_VERSION, CellMeta, ResultStore, StoreError, cellpack, schema
from tests.support import mltag

KEY = CellMeta(options_key="k1", kind="tagger", revision="r1")
SHA = "ab" * 32
WD14_TAGS = 10_861


def _exact(value: Any) -> Any:
    """A value with every float as its bits and every dict as its ordered items: == is bit-exact
    (NaN included) and key order counts."""
    if isinstance(value, float):
        return ("float", struct.pack("<d", value))
    if isinstance(value, dict):
        return ("dict", [(k, _exact(v)) for k, v in value.items()])
    if isinstance(value, list | tuple):
        return ("list", [_exact(v) for v in value])
    return value


def _float32(values: list[float]) -> list[float]:
    """What a float32 model output becomes in a runner: numpy/torch .tolist() gives the float64
    of each float32 exactly (wd14: probs.astype(float).tolist(); clip: tensor.tolist())."""
    return array("f", values).tolist()


def _sigmoid(rng: random.Random, n: int) -> list[float]:
    # mostly near 0 and a few high, as a multi-label tagger's outputs are
    return [1 / (1 + math.exp(-rng.gauss(-6, 2.5))) for _ in range(n)]


def _via_runner(cell: dict[str, Any]) -> dict[str, Any]:
    """The cell as the orchestrator receives it: through msgpack, as the runners send it (floats as float64)."""
    out: dict[str, Any] = msgpack.unpackb(msgpack.packb(cell))
    return out


def wd14_cell(seed: int = 0) -> dict[str, Any]:
    rng = random.Random(seed)
    names = ["general", "sensitive", "questionable", "explicit"] + [
        f"tag_{i:05d}_{'x' * (i % 13)}" for i in range(WD14_TAGS - 4)
    ]
    scores = _float32(_sigmoid(rng, WD14_TAGS))
    tags = [{"name": names[0], "score": scores[0], "category": "rating"}] + [
        {"name": names[i].replace("_", " "), "score": scores[i], "category": "general"}
        for i in range(4, WD14_TAGS)
        if scores[i] >= 0.35
    ]
    return _via_runner(
        {
            "status": "ok",
            "tags": tags,
            "raw": {
                "scores": dict(zip(names, scores, strict=True)),
                "ratings": dict(zip(names[:4], scores[:4], strict=True)),
                "thresholds": {"general": 0.35, "character": 0.85},
            },
            "inference_s": 0.1234,
            "image": {"width": 640},
        }
    )


def clip_cell() -> dict[str, Any]:
    """clip_zeroshot, binary mode: logits, softmax and every term as a tag (all float32 tensors)."""
    rng = random.Random(1)
    terms = [f"term {i}" for i in range(212)]
    logits = _float32([rng.gauss(20, 3) for _ in terms])
    softmax = _float32([rng.random() / 212 for _ in terms])
    scores = _float32([rng.random() for _ in terms])
    order = sorted(range(len(terms)), key=lambda i: -scores[i])
    return _via_runner(
        {
            "status": "ok",
            "caption": None,
            "tags": [{"name": terms[i], "score": scores[i], "category": "zero-shot"} for i in order],
            "raw": {
                "logits": dict(zip(terms, logits, strict=True)),
                "score_mode": "binary",
                "templates": ["a photo of {}."],
                "logit_scale": 100.00000762939453,
                "neutral": {"term": "object", "logit": 19.5},
                "softmax": dict(zip(terms, softmax, strict=True)),
            },
        }
    )


def ram_cell() -> dict[str, Any]:
    """recognize_anything: scores rounded to 6 decimals: float64 values, most not a float32."""
    rng = random.Random(2)
    names = [f"class {i}" for i in range(4585)]
    scores = [round(s, 6) for s in _float32(_sigmoid(rng, len(names)))]
    return _via_runner(
        {
            "status": "ok",
            "tags": [{"name": "class 3", "score": scores[3], "category": "ram"}],
            "raw": {
                "tags_text": "class 3",
                "tags_chinese": "类 3",
                "scores": dict(zip(names, scores, strict=True)),
                "above_threshold": ["class 3"],
            },
        }
    )


def caption_cell() -> dict[str, Any]:
    return _via_runner(
        {
            "status": "ok",
            "caption": "A derelict hallway — broken windows, <b>rust</b>.",
            "tags": [{"name": "hallway", "score": 0.9, "category": "vlm", "estimated": True}],
            "raw": {
                "generations": {
                    "caption": {
                        "prompt": "Describe.",
                        "text": "A derelict hallway " * 200,
                        "new_tokens": 812,
                        "seconds": 3.1415,
                    }
                }
            },
        }
    )


def odd_floats_cell() -> dict[str, Any]:
    """NaN, infinities, signed zero, float32 subnormals, beyond float32's range, one double: each map
    must read back bit for bit (float32 where it can, float64 where it cannot)."""
    exact32 = [float("nan"), float("inf"), -float("inf"), -0.0, 0.0, 1.401298464324817e-45, 3.4028234663852886e38]
    beyond = [1e300, -1e-300, 0.1, 2.0**-1074]
    return {
        "status": "ok",
        "raw": {
            "nonfinite": {f"a{i}": exact32[i % len(exact32)] for i in range(40)},
            "beyond": {f"b{i}": beyond[i % len(beyond)] for i in range(40)},
            "one_double": {f"c{i}": (0.5 if i else 0.1) for i in range(40)},
            "ints_stay_json": {f"d{i}": i for i in range(40)},
            "bools_stay_json": {f"e{i}": 1.0 if i else True for i in range(40)},
            "list": [{"deep": {f"f{i}": float(i) for i in range(40)}}, 3, "x"],
            "small_map_stays_json": {"g": 0.1},
        },
    }


CELLS = {
    "wd14": wd14_cell,
    "clip": clip_cell,
    "ram": ram_cell,
    "caption": caption_cell,
    "no scores": lambda: {"status": "error", "message": "boom", "error": {"type": "RuntimeError"}},
    "bad image": lambda: {"status": "bad_image", "message": "cannot identify image file"},
    "odd floats": odd_floats_cell,
}


def _store(tmp_path: Path) -> ResultStore:
    db = ResultStore(tmp_path / "store.sqlite")
    db.begin_run("run1", 0.0, {}, ["analyze"])
    return db


def _before(cell: dict[str, Any]) -> Any:
    """What the store returned before v3: the cell through its JSON text."""
    return jsontext.loads(jsontext.dumps(cell))


@pytest.mark.parametrize("kind", list(CELLS))
def test_a_cell_reads_back_exactly_as_before(tmp_path: Path, kind: str) -> None:
    cell = CELLS[kind]()
    db = _store(tmp_path)
    db.put_cell("run1", SHA, "m", cell, KEY)
    read = db.cells_of([SHA])[SHA]["m"]
    assert _exact(read) == _exact(_before(cell)) == _exact(cell), "every value, every bit, every key in order"
    again = ResultStore(db.path).cells_of([SHA])[SHA]["m"]  # a new process: vocabularies read from the file
    assert _exact(again) == _exact(cell)


def test_float32_outputs_are_float32_and_float64_stays_float64(tmp_path: Path) -> None:
    """Each adapter's score type (runners/*.py), as it arrives through msgpack."""
    expected = {
        "wd14": [(["raw", "scores"], "f")],  # ONNX float32 -> astype(float)
        "clip": [(["raw", "logits"], "f"), (["raw", "softmax"], "f")],  # torch float32 .tolist()
        "ram": [(["raw", "scores"], "d")],  # round(float32, 6): float64
        "caption": [],
        "no scores": [],
        "bad image": [],
        "odd floats": [
            (["raw", "nonfinite"], "f"),
            (["raw", "beyond"], "d"),
            (["raw", "one_double"], "d"),
            (["raw", "list", 0, "deep"], "f"),
        ],
    }
    db = _store(tmp_path)
    for kind, make in CELLS.items():
        db.put_cell("run1", SHA, kind, make(), KEY)
    con = sqlite3.connect(db.path)
    for kind, stored in con.execute("SELECT model, cell FROM cells"):
        assert cellpack.layout(stored) == expected[kind], kind
    texts = {m for m, t in con.execute("SELECT model, typeof(cell) FROM cells") if t == "text"}
    assert texts == {"no scores", "bad image"}, "a small cell with no score map stays JSON text"


def test_a_wd14_cell_is_small_and_its_vocabulary_is_stored_once(tmp_path: Path) -> None:
    db = _store(tmp_path)
    for seed in range(5):
        db.put_cell("run1", f"{seed:064x}", "wd14", wd14_cell(seed), KEY)
    con = sqlite3.connect(db.path)
    sizes = [n for (n,) in con.execute("SELECT length(cell) FROM cells")]
    text = len(jsontext.dumps(wd14_cell(0)).encode())
    assert text > 350_000 and all(n <= 50_000 for n in sizes), (text, sizes)
    assert con.execute("SELECT count(*), max(count), min(model) FROM vocabularies").fetchone() == (1, WD14_TAGS, "wd14")
    start = time.perf_counter()
    cells = db.cells_of([f"{seed:064x}" for seed in range(5)])
    per_cell = (time.perf_counter() - start) / 5
    assert all(_exact(cells[f"{s:064x}"]["wd14"]) == _exact(wd14_cell(s)) for s in range(5))
    assert per_cell < 0.05, f"{per_cell * 1000:.1f} ms per cell (bench/scale.py measures it; goal 2 ms)"


def test_without_score_values_a_cell_keeps_everything_but_its_maps_values(tmp_path: Path) -> None:
    """For views that never show raw scores (the HTML report, the ranking): the maps' labels, in order,
    one dict shared per vocabulary; every other part of the cell as stored."""
    db = _store(tmp_path)
    for seed in range(3):
        db.put_cell("run1", f"{seed:064x}", "wd14", wd14_cell(seed), KEY)
    full = db.cells_of([f"{s:064x}" for s in range(3)])
    lean = db.cells_of([f"{s:064x}" for s in range(3)], score_values=False)
    for s in range(3):
        a, b = full[f"{s:064x}"]["wd14"], lean[f"{s:064x}"]["wd14"]
        assert list(b["raw"]["scores"]) == list(a["raw"]["scores"]) and set(b["raw"]["scores"].values()) == {None}
        assert {k: v for k, v in b.items() if k != "raw"} == {k: v for k, v in a.items() if k != "raw"}
        assert {k: v for k, v in b["raw"].items() if k != "scores"} == {
            k: v for k, v in a["raw"].items() if k != "scores"
        }
    assert lean[f"{0:064x}"]["wd14"]["raw"]["scores"] is lean[f"{1:064x}"]["wd14"]["raw"]["scores"]


def test_the_html_report_is_the_same_without_score_values(tmp_path: Path) -> None:
    import io

    from orchestrator.images import ImageRef
    from orchestrator.report.html import write_html
    from orchestrator.store.documents import from_store

    db = _store(tmp_path)
    db.record_images("run1", [ImageRef(tmp_path / f"{seed}.jpg", f"{seed:064x}", 1) for seed in range(3)])
    for seed in range(3):
        db.put_cell("run1", f"{seed:064x}", "wd14", wd14_cell(seed), KEY)
    pages = []
    for values in (True, False):
        out = io.StringIO()
        write_html(from_store(db, score_values=values), out)
        pages.append(out.getvalue())
    shown = max((t for t in wd14_cell(2)["tags"] if t["category"] == "general"), key=lambda t: t["score"])["name"]
    assert pages[0] == pages[1] and pages[0].count('"i":"img-') == 3 and shown in pages[0]


def _old_store(path: Path, cells: dict[str, dict[str, Any]]) -> None:
    """A store as the previous schema's code wrote it: migrations up to v2, cells as JSON text."""
    con = sqlite3.connect(path, isolation_level=None)
    for step in schema.MIGRATIONS[:2]:
        step(con)
    con.execute("PRAGMA user_version = 2")
    con.execute(
        "INSERT INTO runs (run_id, started, status, argv, options, mltag_version) "
        "VALUES ('old', 1.0, 'finished', '[]', '{}', '0.1.0')"
    )
    for i, (model, cell) in enumerate(cells.items()):
        sha = f"{i:064x}"
        con.execute("INSERT INTO images (sha256, size_bytes, first_seen) VALUES (?, 1, 1.0)", (sha,))
        con.execute(
            "INSERT INTO image_paths (sha256, path, first_seen, last_seen, last_run, raw) "
            "VALUES (?, ?, 1.0, 1.0, 'old', ?)",
            (sha, f"/photos/{i}.jpg", b"/photos/caf\xe9.jpg"),
        )
        con.execute(
            "INSERT INTO cells (sha256, model, kind, status, message, revision, model_version, env_key, "
            "options_key, device, load_s, warmup_s, inference_s, run_id, time, cell) "
            "VALUES (?, ?, 'tagger', ?, '', 'r1', NULL, NULL, 'k1', 'cpu', 1.0, NULL, 0.1, 'old', 1.0, ?)",
            (sha, model, cell["status"], jsontext.dumps(cell)),
        )
    con.close()


def test_an_older_store_is_converted_in_place_and_keeps_every_result(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    cells = {kind: make() for kind, make in CELLS.items()}
    _old_store(path, cells)
    db = ResultStore(path)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == STORE_VERSION
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kinds = dict(con.execute("SELECT model, typeof(cell) FROM cells").fetchall())
    assert kinds == {k: "text" if k in ("no scores", "bad image") else "blob" for k in CELLS}
    read = db.cells_of(f"{i:064x}" for i in range(len(cells)))
    for i, (kind, cell) in enumerate(cells.items()):
        assert _exact(read[f"{i:064x}"][kind]) == _exact(_before(cell)), kind
    assert db.done_statuses("wd14", "k1", [f"{0:064x}"]) == {f"{0:064x}": "ok"}, "still done: nothing recomputed"


def test_a_failed_conversion_leaves_the_older_store_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "old.sqlite"
    _old_store(path, {kind: make() for kind, make in CELLS.items()})
    before = sqlite3.connect(path).execute("SELECT model, cell FROM cells ORDER BY model").fetchall()
    calls = []

    def failing(cell: dict[str, Any]) -> Any:
        calls.append(1)
        if len(calls) == 3:  # midway, after two cells were converted
            raise RuntimeError("disk on fire")
        return real(cell)

    real = cellpack.pack
    monkeypatch.setattr(cellpack, "pack", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        ResultStore(path)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 2, "one transaction: all or nothing"
    assert con.execute("SELECT model, cell FROM cells ORDER BY model").fetchall() == before
    assert "vocabularies" not in {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    monkeypatch.setattr(cellpack, "pack", real)
    assert _exact(ResultStore(path).cells_of([f"{0:064x}"])[f"{0:064x}"]["wd14"]) == _exact(CELLS["wd14"]())


def test_a_json_text_cell_still_reads_and_vacuum_packs_it(tmp_path: Path) -> None:
    """A cell in the older format inside a new store (merged from an older in-folder store): read as
    it is, and `mltag store vacuum` packs it."""
    db = _store(tmp_path)
    cell = wd14_cell(3)
    db.put_cell("run1", SHA, "wd14", {"status": "ok"}, KEY)
    con = sqlite3.connect(db.path, isolation_level=None)
    con.execute("UPDATE cells SET cell = ?", (jsontext.dumps(cell),))
    assert _exact(db.cells_of([SHA])[SHA]["wd14"]) == _exact(cell)
    proc = mltag("store", "vacuum", "--store", str(db.path))
    assert proc.returncode == 0, proc.stderr
    assert "1 cell(s) packed" in proc.stderr
    assert con.execute("SELECT typeof(cell) FROM cells").fetchone()[0] == "blob"
    assert _exact(ResultStore(db.path).cells_of([SHA])[SHA]["wd14"]) == _exact(cell)
    stats = mltag("store", "stats", "--store", str(db.path))
    assert stats.returncode == 0, stats.stderr
    assert "wd14" in stats.stdout and "images: 0" in stats.stdout, stats.stdout


def test_a_packed_store_merges_into_another(tmp_path: Path) -> None:
    """A v3 store left inside a folder merges: its cells refer to vocabularies by content."""
    old = _store(tmp_path / "old")
    old.put_cell("run1", SHA, "wd14", wd14_cell(4), KEY)
    old.close()
    new = ResultStore(tmp_path / "new.sqlite")
    assert new.import_store(old.path) == 1
    assert _exact(new.cells_of([SHA])[SHA]["wd14"]) == _exact(wd14_cell(4))


def test_a_damaged_cell_is_a_store_error_not_a_crash(tmp_path: Path) -> None:
    db = _store(tmp_path)
    db.put_cell("run1", SHA, "wd14", wd14_cell(5), KEY)
    con = sqlite3.connect(db.path, isolation_level=None)
    blob = con.execute("SELECT cell FROM cells").fetchone()[0]
    con.execute("UPDATE cells SET cell = ?", (blob[:3] + bytes(b ^ 0x5A for b in blob[3:200]) + blob[200:],))
    with pytest.raises(StoreError, match="damaged cell"):
        db.cells_of([SHA])
