"""JSON (the whole raw document) and CSV (one row per image x model x tag)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

CSV_FIELDS = ("image", "sha256", "model", "status", "tag", "score", "category", "estimated", "caption", "message",
              "inference_s", "revision")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def to_json(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, default=str)


def spreadsheet_safe(value: Any) -> Any:
    """Escape cells a spreadsheet would run as a formula (CSV injection)."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv(document: dict[str, Any], threshold: float | None = None) -> str:
    revisions = {m["name"]: m["revision"] for m in document["models"]}
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for image in document["images"]:
        for model, result in image["results"].items():
            base = {"image": image["path"], "sha256": image["sha256"], "model": model, "status": result["status"],
                    "caption": result.get("caption") or "", "message": result.get("message", ""),
                    "inference_s": result.get("inference_s", ""), "revision": revisions.get(model, "")}
            tags = [t for t in result.get("tags") or [] if threshold is None or t["score"] >= threshold]
            for tag in tags or [None]:
                row = dict(base)
                if tag is not None:
                    row.update(tag=tag["name"], score=f"{tag['score']:.6f}", category=tag.get("category", ""),
                               estimated=bool(tag.get("estimated", False)))
                writer.writerow({k: spreadsheet_safe(v) for k, v in row.items()})
    return buf.getvalue()
