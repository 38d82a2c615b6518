"""The terminal view: per image, one box per model (status, timings, tags or caption)."""

from __future__ import annotations

from typing import Any

from rich.columns import Columns
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from orchestrator.compare import Comparison
from orchestrator.report.summary import Views, image_line, render_comparison
from orchestrator.results import Results

STATUS_STYLE = {"ok": "green", "no_tags": "yellow", "timeout": "red", "crashed": "red", "error": "red",
                "bad_image": "magenta", "skipped": "dim"}
BAR_WIDTH = 12


def shown_tags(result: dict[str, Any], threshold: float | None, top: int) -> list[dict[str, Any]]:
    tags = sorted(result.get("tags") or [], key=lambda t: -t["score"])
    if threshold is not None:
        tags = [t for t in tags if t["score"] >= threshold]
    return tags[:top] if top > 0 else tags


def _bar(score: float) -> str:
    filled = round(max(0.0, min(1.0, score)) * BAR_WIDTH)
    return "█" * filled + "░" * (BAR_WIDTH - filled)


def _timing(result: dict[str, Any]) -> str:
    inf = result.get("inference_s")
    return f"{inf * 1000:.0f} ms" if inf is not None else ""


def model_box(name: str, model: dict[str, Any], result: dict[str, Any], threshold: float | None,
              top: int) -> Panel:
    status = result.get("status", "?")
    style = STATUS_STYLE.get(status, "white")
    parts: list[Any] = []
    head = Text.assemble((status, f"bold {style}"), f"  {_timing(result)}")
    if model.get("device"):
        head.append(f"  {model['device']}", style="dim")
    parts.append(head)
    if result.get("message"):
        parts.append(Text(result["message"].splitlines()[0][:300], style=style))
    if result.get("fix"):
        parts.append(Text(f"fix: {result['fix']}", style="cyan"))
    if result.get("caption"):
        parts.append(Text(result["caption"][:600], style="italic"))
    tags = shown_tags(result, threshold, top)
    if tags:
        table = Table.grid(padding=(0, 1))
        for tag in tags:
            est = "~" if tag.get("estimated") else " "
            table.add_row(tag["name"][:28], f"{tag['score']:.3f}{est}", Text(_bar(tag["score"]), style=style))
        parts.append(table)
        if any(t.get("estimated") for t in tags):
            parts.append(Text("~ estimated confidence (from caption position / frequency)", style="dim"))
    # The judge's column merges the others' outputs: never let it pass for a model's own view.
    title = f"[bold]{escape(name)}[/]" + (" [magenta](synthesis)[/]" if model.get("kind") == "judge" else "")
    return Panel(Group(*parts), title=title, title_align="left", border_style=style, width=48)


def one_line(text: str) -> str:
    """A file name on one terminal line: control characters (a newline in a name) shown escaped."""
    return "".join(c if c.isprintable() or c == " " else c.encode("unicode_escape").decode() for c in text)


def render(results: Results | dict[str, Any], console: Console, views: Views | None = None) -> None:
    """Per image the model boxes (raw tags) and its consensus line, printed as the images stream;
    then the models and the comparison's summary and views (report/summary.py)."""
    if isinstance(results, dict):
        results = Results.of(results)
    models = {m["name"]: m for m in results.models}
    opts = results.options
    views = views or Views(top=opts.get("top", 10), threshold=opts.get("threshold"))
    comparison = Comparison(results.models, views.top, views.threshold, views.normaliser)
    voices = len(comparison.voices)
    for image in results.images():
        console.rule(f"[bold]{escape(one_line(image['path']))}[/]  [dim]{image['sha256'][:12]}[/]")
        boxes = [model_box(name, models.get(name, {}), result, views.threshold, views.top)
                 for name, result in image["results"].items()]
        console.print(Columns(boxes, equal=False, expand=False))
        compared = comparison.add(image)
        if compared is not None:
            console.print(image_line(compared, voices, views.top))
        else:
            console.print(Text(f"identical to {image['duplicate_of']}: compared once, with it", style="dim"))
    summary = comparison.result()
    console.print(models_table(results.models, summary))
    render_comparison(summary, console, views)


def models_table(models: list[dict[str, Any]], comparison: dict[str, Any]) -> Table:
    table = Table(title="models", title_justify="left")
    for col in ("model", "status", "device", "load s", "warm-up s", "mean inference s", "crashes", "timeouts"):
        table.add_column(col)
    timing = comparison["folder"]["timing"]
    for m in models:
        mean = (timing.get(m["name"]) or {}).get("mean_s")
        status = Text(m["status"], style=STATUS_STYLE.get(m["status"], "white"))
        table.add_row(m["name"], status, m.get("device") or "-",
                      _fmt(m.get("load_s")), _fmt(m.get("warmup_s")), _fmt(mean, 3), str(m.get("crashes", 0)),
                      str(m.get("timeouts", 0)))
    return table


def _fmt(value: float | None, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"
