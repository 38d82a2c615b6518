"""The terminal view, as the plan draws it: per image a header ("ML TAG ANALYZER - photo.jpg, N models
loaded"), one box per model titled with its time, tag count and kind badge, then the image's SUMMARY,
CONSENSUS (k+ models) and MODEL AGREEMENT lines, and on request its tag x model matrix (--show-matrix)
and one tag's confidence bars (--show-confidence). The folder's figures follow (report/comparison_views.py).
Everything per image is printed as the image streams from the store: nothing is kept per image."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich import box
from rich.columns import Columns
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from orchestrator.document import Cell, ComparisonResult, ModelEntry, Results, Tag
from orchestrator.report.comparison_views import (
    BOX_BAR_WIDTH,
    Views,
    bar,
    confidence_bars,
    duration,
    image_matrix,
    image_summary,
    render_comparison,
)

STATUS_STYLE = {
    "ok": "green",
    "no_tags": "yellow",
    "timeout": "red",
    "crashed": "red",
    "error": "red",
    "bad_image": "magenta",
    "skipped": "dim",
}
# The kind badge of a box title; a cell that failed shows its status instead.
BADGES = {"tagger": "PURE TAGGER", "zero-shot": "ZERO-SHOT", "captioner": "CAPTIONER", "judge": "SYNTHESIS"}


def shown_tags(result: Cell, threshold: float | None, top: int) -> list[Tag]:
    tags = sorted(result.get("tags") or [], key=lambda t: -t["score"])
    if threshold is not None:
        tags = [t for t in tags if t["score"] >= threshold]
    return tags[:top] if top > 0 else tags


def _above(result: Cell, threshold: float | None) -> list[Tag]:
    return [
        t
        for t in result.get("tags") or []
        if t.get("category") != "rating" and (threshold is None or t["score"] >= threshold)
    ]


def box_title(name: str, model: ModelEntry, result: Cell, threshold: float | None) -> str:
    """ "wd14 (890ms, 67 tags) ★ PURE TAGGER": time, tags above the threshold, and the kind (or the failure)."""
    status = result.get("status", "?")
    kind = model.get("kind") or "tagger"
    facts = [duration(result["inference_s"])] if result.get("inference_s") is not None else []
    if status == "ok":
        n = len(_above(result, threshold))
        facts.append(f"{n} terms" if kind == "zero-shot" and threshold is None else f"{n} tag{'s' * (n != 1)}")
    badge = BADGES.get(kind, kind.upper()) if status == "ok" else status.upper().replace("_", " ")
    style = "bold" if status == "ok" else f"bold {STATUS_STYLE.get(status, 'white')}"
    title = f"[bold]{escape(name)}[/]" + (f" ({', '.join(facts)})" if facts else "")
    return f"{title} [{style}]★ {badge}[/]"


def model_box(name: str, model: ModelEntry, result: Cell, threshold: float | None, top: int) -> Panel:
    status = result.get("status", "?")
    style = STATUS_STYLE.get(status, "white")
    parts: list[Any] = []
    head = Text.assemble((status, f"bold {style}"))
    if model.get("device"):
        head.append(f"  {model['device']}", style="dim")
    parts.append(head)
    if result.get("message"):
        parts.append(Text(result["message"].splitlines()[0][:300], style=style))
    if result.get("fix"):
        parts.append(Text(f"fix: {result['fix']}", style="cyan"))
    if caption := result.get("caption"):
        parts.append(Text.assemble(("CAPTION: ", "bold"), (caption[:600], "italic")))
    tags = shown_tags(result, threshold, top)
    if tags:
        table = Table.grid(padding=(0, 1))
        for tag in tags:
            est = "~" if tag.get("estimated") else " "
            table.add_row(
                tag["name"][:28], f"{tag['score']:.3f}{est}", Text(bar(tag["score"], BOX_BAR_WIDTH), style=style)
            )
        parts.append(table)
        if any(t.get("estimated") for t in tags):
            parts.append(Text("~ estimated confidence (from caption position / frequency)", style="dim"))
    # The judge's column merges the others' outputs: never let it pass for a model's own view.
    title = box_title(name, model, result, threshold) + (
        " [magenta](synthesis)[/]" if model.get("kind") == "judge" else ""
    )
    return Panel(Group(*parts), title=title, title_align="left", border_style=style, width=48)


def one_line(text: str) -> str:
    """A file name on one terminal line: control characters (a newline in a name) shown escaped."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode() for c in text)


def header(path: str, sha256: str, loaded: int, total: int) -> Panel:
    """ML TAG ANALYZER - photo.jpg ... N models loaded."""
    line = Table.grid(expand=True)
    line.add_column(ratio=1, overflow="fold")
    line.add_column(justify="right", no_wrap=True)
    line.add_row(
        Text.assemble(("ML TAG ANALYZER - ", "bold"), (one_line(path), "bold"), (f"  {sha256[:12]}", "dim")),
        Text(f"{loaded} models loaded" + (f" (of {total})" if loaded != total else ""), style="bold"),
    )
    return Panel(line, box=box.DOUBLE)


def render(results: Results | Mapping[str, Any], console: Console, views: Views | None = None) -> None:
    """Per image (as the images stream) the header, the model boxes (raw tags), the image's summary and
    consensus, and its matrix and confidence bars when asked; then the models and the comparison's
    folder summary and views (report/comparison_views.py)."""
    if not isinstance(results, Results):  # a document held in memory
        results = Results.of(results)
    models = {m["name"]: m for m in results.models}
    opts = results.options
    views = views or Views(top=opts.get("top", 10), threshold=opts.get("threshold"))
    comparison = views.comparison(results.models)
    loaded = sum(1 for m in results.models if m.get("status") == "ok")
    for image in results.images():
        console.print(header(image["path"], image["sha256"], loaded, len(results.models)))
        boxes = [
            model_box(name, models.get(name, {"name": name}), result, views.threshold, views.top)
            for name, result in image["results"].items()
        ]
        console.print(Columns(boxes, equal=False, expand=False))
        compared = comparison.add(image)
        if compared is None:
            console.print(Text(f"identical to {image['duplicate_of']}: compared once, with it", style="dim"))
            continue
        cells = image["results"].values()
        seconds = sum(c.get("inference_s") or 0.0 for c in cells)
        failed = sum(1 for m, c in image["results"].items() if m in comparison.voices and c.get("status") != "ok")
        console.print(image_summary(compared, seconds, failed, views.top))
        if views.matrix:
            console.print(image_matrix(compared, comparison.voices, views.top))
        for tag in views.confidence:
            console.print(confidence_bars(comparison.lookup(image, tag), tag, comparison.normalise(tag)))
    summary = comparison.result()
    console.print(models_table(results.models, summary))
    render_comparison(summary, console, views)


def models_table(models: list[ModelEntry], comparison: ComparisonResult) -> Table:
    table = Table(title="models", title_justify="left")
    for col in ("model", "status", "device", "load s", "warm-up s", "mean inference s", "crashes", "timeouts"):
        table.add_column(col)
    timing = comparison["folder"]["timing"]
    for m in models:
        mean = t.get("mean_s") if (t := timing.get(m["name"])) else None
        status = Text(m["status"], style=STATUS_STYLE.get(m["status"], "white"))
        table.add_row(
            m["name"],
            status,
            m.get("device") or "-",
            _fmt(m.get("load_s")),
            _fmt(m.get("warmup_s")),
            _fmt(mean, 3),
            str(m.get("crashes", 0)),
            str(m.get("timeouts", 0)),
        )
    return table


def _fmt(value: float | None, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"
