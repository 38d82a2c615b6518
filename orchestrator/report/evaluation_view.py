"""`mltag eval`'s terminal table: which model tags the archive best, each figure over its 95% interval."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from orchestrator.report.comparison_views import figure, new_table, titled


def _with_interval(
    figures: dict[str, Any], intervals: dict[str, list[float]] | None, metric: str, bold: bool = False
) -> Text:
    """A figure, and under it (dim) its 95% interval."""
    text = Text(figure(figures.get(metric), 3), style="bold" if bold else "")
    if intervals and metric in intervals:
        low, high = intervals[metric]
        text.append(f"\n{low:.2f}–{high:.2f}".replace("0.", "."), style="dim")  # .62–.71: fits 100 columns
    return text


def evaluation_table(evaluation: dict[str, Any]) -> Group:
    """`mltag eval`: which model tags my archive best (best F1 first), each figure over its 95% interval."""
    table = new_table(
        f"which model tags my archive best: {evaluation['labelled']} labelled image(s), "
        f"{evaluation['true_tags']} true tag(s)"
    )
    for col in ("#", "model", "images", "P own", "R own", "F1 own", "thresh", "P best", "R best", "F1 best"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=col == "model")
    for rank, r in enumerate(evaluation["models"], 1):
        own, best = r["own"] or {}, r["best"] or {}
        iv = r.get("intervals") or {}
        images = f"{r['images']}" + (f" ({r['failed']} failed)" if r["failed"] else "")
        table.add_row(
            str(rank),
            Text(r["model"]),
            images,
            *(_with_interval(own, iv.get("own"), m) for m in ("precision", "recall", "f1")),
            figure(best.get("threshold"), 3),
            *(_with_interval(best, iv.get("best"), m, m == "f1") for m in ("precision", "recall", "f1")),
        )
    leader = evaluation.get("leader")
    lead: list[RenderableType] = []
    if leader:
        low, high = leader["interval"]
        verdict = "ahead beyond noise" if leader["ahead"] else "NOT ahead beyond noise (label more photos)"
        lead.append(
            Text(
                f"{leader['model']} leads {leader['runner_up']} by {leader['difference']:+.3f} best F1 "
                f"(95% interval {low:+.3f} to {high:+.3f}, paired bootstrap): {verdict}",
                style="bold green" if leader["ahead"] else "bold yellow",
            )
        )
    if evaluation.get("bootstrap"):
        boot = evaluation["bootstrap"]
        lead.append(
            Text(
                f"under each figure: its 95% interval ({boot['resamples']} bootstrap resamples of the "
                f"photos, seed {boot['seed']})",
                style="dim",
            )
        )
    notes = [Text(f"{k}: {v}", style="dim") for k, v in evaluation["definitions"].items()]
    if evaluation["unlabelled"]:
        notes.append(Text(f"{evaluation['unlabelled']} image(s) in the results have no label: ignored", style="dim"))
    if evaluation["unmatched_labels"]:
        shown = ", ".join(evaluation["unmatched_labels"][:10])
        more = len(evaluation["unmatched_labels"]) - 10
        notes.append(
            Text(
                f"labels for image(s) not in the results: {shown}" + (f" and {more} more" if more > 0 else ""),
                style="yellow",
            )
        )
    return Group(titled(table), *lead, *notes)
