"""JSON (the whole raw document and its comparison) and CSV (one row per image x model x tag).

Both are written as the images stream from the results store (orchestrator/store/documents.py): one image
in memory at a time, so a folder of 100,000 photos costs what ten do. The JSON is still one valid
document (schemas/result.schema.json); JSON Lines (`jsonl`) writes one image per line instead,
for tools that read very large outputs line by line. Each image (and each image's comparison)
sits on one line of the JSON document: a large folder's JSON stays fast to write and easy to grep.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Mapping
from typing import IO, Any

from orchestrator import jsontext
from orchestrator.compare import Comparison
from orchestrator.document import Results, Tag

CSV_FIELDS = (
    "image",
    "sha256",
    "model",
    "status",
    "tag",
    "score",
    "category",
    "estimated",
    "caption",
    "message",
    "inference_s",
    "revision",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _dump(value: Any, level: int) -> str:
    """`value` as indented JSON, to be placed `level` levels deep (small values: the header, models)."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str).replace("\n", "\n" + "  " * level)


def _line(value: Any) -> str:
    """`value` as JSON on one line. Each image is written so: a cell with every WD14 score is ~0.7 s
    to indent in pure Python, ~1 ms on one line (orchestrator/jsontext.py)."""
    return jsontext.dumps(value)


def _open_object(value: Mapping[str, object], level: int) -> str:
    """A dict's JSON without its closing brace, so more keys can follow."""
    text = _dump(value, level)
    return text[: text.rstrip().rfind("}")].rstrip() if value else "{"


def write_json(results: Results, out: IO[str], comparison: Comparison | None = None) -> None:
    """The document, images streamed; with `comparison`, the images are fed to it and it is written
    last (its per-image entries wait in a temporary file, never in memory)."""
    out.write(_open_object(results.head, 0) + ",\n")
    out.write(f'  "models": {_dump(results.models, 1)},\n  "images": [')
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        first = True
        for image in results.images():
            entry = comparison.add(image) if comparison is not None else None
            if entry is not None:  # the plan's per-image summary beside the image's cells
                image["summary"] = entry["summary"]
                spool.write(_line([image["sha256"], entry]) + "\n")
            out.write(("\n    " if first else ",\n    ") + _line(image))
            first = False
        out.write("\n  ]" if not first else "]")
        if comparison is not None:
            summary = {k: v for k, v in comparison.result().items() if k != "images"}  # written below
            out.write(',\n  "comparison": ' + _open_object(summary, 1) + ',\n    "images": {')
            spool.seek(0)
            for i, line in enumerate(spool):
                sha, entry = jsontext.loads(line)
                out.write(("\n" if i == 0 else ",\n") + f"      {json.dumps(sha)}: {_line(entry)}")
            out.write("\n    }\n  }" if comparison.n_images else "}\n  }")
    out.write("\n}\n")


def write_jsonl(results: Results, out: IO[str], comparison: Comparison | None = None) -> None:
    """JSON Lines: the header and models on the first line, then one image per line (with its
    summary when `comparison` is given: the folder figures need the JSON format)."""
    out.write(_line({**results.head, "models": results.models}) + "\n")
    for image in results.images():
        if comparison is not None and (entry := comparison.add(image)) is not None:
            image["summary"] = entry["summary"]
        out.write(_line(image) + "\n")


def to_json(document: Mapping[str, object]) -> str:
    """A document held in memory as JSON (small documents: tests, health)."""
    return json.dumps(document, indent=2, ensure_ascii=False, default=str)


def spreadsheet_safe(value: Any) -> Any:
    """Escape cells a spreadsheet would run as a formula (CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_csv(results: Results, out: IO[str], threshold: float | None = None) -> None:
    revisions = {m["name"]: m["revision"] for m in results.models}
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for image in results.images():
        for model, result in image["results"].items():
            base = {
                "image": image["path"],
                "sha256": image["sha256"],
                "model": model,
                "status": result["status"],
                "caption": result.get("caption") or "",
                "message": result.get("message", ""),
                "inference_s": result.get("inference_s", ""),
                "revision": revisions.get(model, ""),
            }
            tags: list[Tag | None] = [
                t for t in result.get("tags") or [] if threshold is None or t["score"] >= threshold
            ]
            for tag in tags or [None]:
                row = dict(base)
                if tag is not None:
                    row.update(
                        tag=tag["name"],
                        score=f"{tag['score']:.6f}",
                        category=tag.get("category", ""),
                        estimated=bool(tag.get("estimated", False)),
                    )
                writer.writerow({k: spreadsheet_safe(v) for k, v in row.items()})


def to_csv(document: Mapping[str, Any], threshold: float | None = None) -> str:
    """A document held in memory as CSV (small documents: tests)."""
    buf = io.StringIO()
    write_csv(Results.of(document), buf, threshold)
    return buf.getvalue()


EVALUATION_FIELDS = (
    "rank",
    "model",
    "kind",
    "images",
    "failed",
    "own_precision",
    "own_recall",
    "own_f1",
    "own_macro_f1",
    "best_threshold",
    "best_precision",
    "best_recall",
    "best_f1",
    "best_macro_f1",
    # 95% bootstrap intervals, and on the leader's row its best-F1 lead over the runner-up
    *(f"{t}_{m}_{end}" for t in ("own", "best") for m in ("precision", "recall", "f1") for end in ("lo", "hi")),
    "lead_best_f1",
    "lead_lo",
    "lead_hi",
    "ahead_beyond_noise",
)


def evaluation_csv(evaluation: dict[str, Any]) -> str:
    """`mltag eval --format csv`: one row per model, best first (spreadsheet-safe: model names are escaped
    like the results CSV)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=EVALUATION_FIELDS, lineterminator="\n", restval="")
    writer.writeheader()
    for rank, r in enumerate(evaluation["models"], 1):
        own, best = r["own"] or {}, r["best"] or {}
        row = {
            "rank": rank,
            "model": r["model"],
            "kind": r.get("kind") or "",
            "images": r["images"],
            "failed": r["failed"],
            "best_threshold": best.get("threshold", ""),
        }
        for prefix, m in (("own", own), ("best", best)):
            row.update({f"{prefix}_{k}": m.get(k, "") for k in ("precision", "recall", "f1", "macro_f1")})
            for metric, (low, high) in ((r.get("intervals") or {}).get(prefix) or {}).items():
                row.update({f"{prefix}_{metric}_lo": low, f"{prefix}_{metric}_hi": high})
        leader = evaluation.get("leader")
        if leader and leader["model"] == r["model"]:
            row.update(
                {
                    "lead_best_f1": leader["difference"],
                    "lead_lo": leader["interval"][0],
                    "lead_hi": leader["interval"][1],
                    "ahead_beyond_noise": "yes" if leader["ahead"] else "no",
                }
            )
        writer.writerow({k: spreadsheet_safe(v) for k, v in row.items()})
    return buf.getvalue()
