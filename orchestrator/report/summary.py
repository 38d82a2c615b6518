"""The terminal views of the comparison (orchestrator/compare) and of `mltag eval`.

Every view is a rich renderable that fits a 100-column terminal: the consensus with the
agreement figure and its definition, the model x model agreement, status counts, and on request
the tag x model matrix (--show-matrix), the timing table (--show-timing) and one tag's
confidence across models as bars (--show-confidence TAG). Estimated scores carry `~`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

BAR_WIDTH = 12        # as the per-model boxes (report/table.py)
TAG_WIDTH = 28
EST = "~"


@dataclass
class Views:
    """The comparison's settings (--top, --threshold, --synonyms) and the table views asked for."""
    top: int = 10                                         # tags compared per model and image; rows shown (0 = all)
    threshold: float | None = None                        # display threshold, applied before comparing
    matrix: bool = False
    timing: bool = False
    confidence: list[str] = field(default_factory=list)   # tags for --show-confidence
    normaliser: Callable[[str], str] | None = None        # with the synonym map; None: the plain Normaliser


def bar(score: float | None) -> str:
    """The seed's score bar: filled blocks for the score, light shade for the rest (12 wide)."""
    filled = round(max(0.0, min(1.0, score or 0.0)) * BAR_WIDTH)
    return "█" * filled + "░" * (BAR_WIDTH - filled)


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _est(flag: bool) -> str:
    return EST if flag else ""


def _table(title: str, **kwargs: Any) -> Table:
    return Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
                 show_edge=False, **kwargs)


def _titled(table: Table) -> Group:
    """Title and caption as their own lines: inside a narrow table rich would wrap them to its width."""
    title, caption = table.title, table.caption
    table.title = table.caption = None
    parts: list[RenderableType] = [Text(""), Text(str(title), style="bold")] if title else [Text("")]
    parts.append(table)
    if caption:
        parts.append(Text(str(caption), style="dim"))
    return Group(*parts)


def _rows(items: list[Any], top: int) -> list[Any]:
    return items[:top] if top > 0 else items


def image_line(compared: dict[str, Any], n_models: int, top: int) -> Text:
    """One image's consensus and agreement, under its model boxes."""
    line = Text("consensus: ", style="bold")
    items = _rows(compared.get("consensus") or [], min(top, 8) if top > 0 else 8)
    for i, item in enumerate(items):
        line.append(("  " if i else "") + item["tag"], style="bold" if item["n_models"] > 1 else "")
        line.append(f" {item['n_models']}/{n_models} {item['score']:.2f}{_est(item.get('estimated', False))}",
                    style="dim")
    if not items:
        line.append("no ok tags", style="dim")
    agreement = compared.get("agreement")
    line.append(f"   agreement {_num(agreement)}" if agreement is not None else
                f"   agreement - ({compared.get('agreement_note') or 'n/a'})", style="cyan")
    return line


def consensus_table(comparison: dict[str, Any], top: int) -> Table:
    folder = comparison["folder"]
    voices = [m for m in comparison["models"] if m not in comparison.get("synthesis", [])]
    table = _table(f"consensus over {folder['n_images']} image(s): models agreeing x mean confidence")
    for col, justify in (("#", "right"), ("tag", "left"), ("models", "right"), ("mean conf", "right"),
                         ("score", "right"), ("images", "right"), ("given by", "left")):
        table.add_column(col, justify=justify, no_wrap=col != "given by", max_width=TAG_WIDTH if col == "tag" else None,
                         overflow="ellipsis" if col == "tag" else "fold")
    for rank, item in enumerate(_rows(folder["consensus"], top), 1):
        table.add_row(str(rank), item["tag"], f"{item['n_models']}/{len(voices)}",
                      _num(item["mean_confidence"], 3) + _est(item["estimated"]), _num(item["score"], 3),
                      str(item["images"]), ", ".join(item["models"]))
    if not folder["consensus"]:
        table.add_row("", Text("no model gave a tag (no ok cell above the threshold)", style="dim"), "", "", "", "", "")
    return table


def agreement_text(comparison: dict[str, Any]) -> Text:
    folder, definitions = comparison["folder"], comparison["definitions"]
    value = folder["agreement"]
    text = Text("model agreement: ", style="bold")
    text.append(_num(value) if value is not None else f"- ({folder.get('agreement_note')})", style="bold cyan")
    text.append(f"\n  = {definitions['agreement']}", style="dim")
    text.append(f"\n  consensus score = {definitions['consensus_score']}", style="dim")
    text.append(f"\n  normalisation: {definitions['normalisation']}", style="dim")
    if comparison.get("synthesis"):
        text.append(f"\n  left out as a synthesis of the others: {', '.join(comparison['synthesis'])}", style="dim")
    return text


def pairwise_table(comparison: dict[str, Any]) -> Table | None:
    pairwise = comparison["folder"]["pairwise"]
    models = list(pairwise)
    if len(models) < 2:
        return None
    table = _table("model x model agreement (mean Jaccard of top tags)")
    table.add_column("")
    for m in models:
        table.add_column(m, justify="right", overflow="fold")
    for a in models:
        table.add_row(a, *(_num(pairwise[a][b]) for b in models))
    return table


def status_table(comparison: dict[str, Any]) -> Table:
    table = _table("cells by status (unique images)")
    table.add_column("model", no_wrap=True)
    table.add_column("statuses", overflow="fold")
    for model, counts in comparison["folder"]["status_counts"].items():
        table.add_row(model, "  ".join(f"{status} {n}" for status, n in counts.items()))
    return table


def matrix_table(comparison: dict[str, Any], top: int) -> Table:
    """Tag x model: images where the tag is in the model's top tags, and its mean score there."""
    voices = [m for m in comparison["models"] if m not in comparison.get("synthesis", [])]
    table = _table("agreement matrix: images (mean score) per tag and model")
    table.add_column("tag", max_width=TAG_WIDTH, overflow="ellipsis", no_wrap=True)
    for m in voices:
        table.add_column(m, justify="right", overflow="fold")
    table.add_column("models", justify="right")
    for row in _rows(comparison["folder"]["matrix"], top):
        cells = []
        for m in voices:
            c = row["models"].get(m)
            cells.append(f"{c['images']} ({c['mean_score']:.2f}{_est(c['estimated'])})" if c else "·")
        table.add_row(row["tag"], *cells, f"{row['n_models']}/{len(voices)}")
    return table


def timing_table(comparison: dict[str, Any]) -> Table:
    table = _table("timing per model (seconds)")
    for col in ("model", "load", "warm-up", "mean", "p50", "p95", "img/s", "n"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=col == "model")
    for model, t in comparison["folder"]["timing"].items():
        table.add_row(model, _num(t["load_s"]), _num(t["warmup_s"]), _num(t["mean_s"], 3), _num(t["p50_s"], 3),
                      _num(t["p95_s"], 3), _num(t["images_per_s"]), str(t["n"]))
    table.caption = comparison["definitions"].get("timing")
    table.caption_justify = "left"
    return table


def confidence_view(comparison: dict[str, Any], tag: str, normalise: Callable[[str], str]) -> RenderableType:
    """One tag's mean score per model as bars, over the images where the model gave it."""
    name = normalise(tag)
    by_model = comparison["folder"]["confidence"].get(name)
    if not by_model:
        close = difflib.get_close_matches(name, list(comparison["folder"]["confidence"]), n=5, cutoff=0.6)
        hint = f"; close: {', '.join(close)}" if close else ""
        return Text(f"--show-confidence {tag!r}: no model gave {name!r} above the threshold{hint}", style="yellow")
    ok = {m: counts.get("ok", 0) for m, counts in comparison["folder"]["status_counts"].items()}
    table = _table(f"confidence for {name!r} across models" + (f" (asked: {tag!r})" if name != tag else ""))
    for col in ("model", "bar", "mean", "images"):
        table.add_column(col, justify="right" if col in ("mean", "images") else "left", no_wrap=True)
    for model in comparison["models"]:
        c = by_model.get(model)
        if c is None:
            table.add_row(model, Text(bar(0), style="dim"), "-", f"0/{ok.get(model, 0)}")
        else:
            table.add_row(model, Text(bar(c["mean_score"]), style="green"),
                          f"{c['mean_score']:.3f}{_est(c['estimated'])}", f"{c['images']}/{ok.get(model, 0)}")
    table.caption = "mean score over the images where the model gave the tag; images: given / ok cells"
    table.caption_justify = "left"
    return table


def render_comparison(comparison: dict[str, Any], console: Console, views: Views) -> None:
    """The folder summary, then the views asked for."""
    parts: list[RenderableType] = [_titled(consensus_table(comparison, views.top)), agreement_text(comparison)]
    pairwise = pairwise_table(comparison)
    if pairwise is not None:
        parts.append(_titled(pairwise))
    parts.append(_titled(status_table(comparison)))
    if views.matrix:
        parts.append(_titled(matrix_table(comparison, views.top)))
    if views.timing:
        parts.append(_titled(timing_table(comparison)))
    if views.confidence:
        from orchestrator.compare.normalise import Normaliser

        norm = views.normaliser or Normaliser()
        parts += [_titled(v) if isinstance(v := confidence_view(comparison, tag, norm), Table) else v
                  for tag in views.confidence]
    parts.append(Text(comparison["definitions"]["estimated"], style="dim"))
    console.print(Group(*parts))


def evaluation_table(evaluation: dict[str, Any]) -> Group:
    """`mltag eval`: which model tags my archive best (best F1 first)."""
    table = _table(f"which model tags my archive best: {evaluation['labelled']} labelled image(s), "
                   f"{evaluation['true_tags']} true tag(s)")
    for col in ("#", "model", "images", "P own", "R own", "F1 own", "thresh", "P best", "R best", "F1 best"):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=col == "model")
    for rank, r in enumerate(evaluation["models"], 1):
        own, best = r["own"] or {}, r["best"] or {}
        images = f"{r['images']}" + (f" ({r['failed']} failed)" if r["failed"] else "")
        table.add_row(str(rank), r["model"], images, _num(own.get("precision"), 3), _num(own.get("recall"), 3),
                      _num(own.get("f1"), 3), _num(best.get("threshold"), 3), _num(best.get("precision"), 3),
                      _num(best.get("recall"), 3), Text(_num(best.get("f1"), 3), style="bold"))
    notes = [Text(f"{k}: {v}", style="dim") for k, v in evaluation["definitions"].items()]
    if evaluation["unlabelled"]:
        notes.append(Text(f"{evaluation['unlabelled']} image(s) in the results have no label: ignored", style="dim"))
    if evaluation["unmatched_labels"]:
        shown = ", ".join(evaluation["unmatched_labels"][:10])
        more = len(evaluation["unmatched_labels"]) - 10
        notes.append(Text(f"labels for image(s) not in the results: {shown}" + (f" and {more} more" if more > 0
                                                                                   else ""), style="yellow"))
    return Group(_titled(table), *notes)
