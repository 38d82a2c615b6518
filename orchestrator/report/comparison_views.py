"""The comparison's terminal views (orchestrator/compare); `mltag eval`'s table is report/evaluation_view.py.

Every view is a rich renderable that fits a 100-column terminal: the consensus with the
agreement figure and its definition, the model x model agreement, status counts, and on request
the tag x model matrix (--show-matrix), the timing table (--show-timing) and one tag's
confidence across models as bars (--show-confidence TAG). Estimated scores carry `~`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from rich import box
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from orchestrator.document import ComparisonResult, ConsensusItem, ImageComparison, ModelEntry

BAR_WIDTH = 24  # the plan's confidence bars
BOX_BAR_WIDTH = 12  # the bars inside the per-model boxes (report/table.py)
TAG_WIDTH = 28
EST = "~"

if TYPE_CHECKING:
    from orchestrator.compare import Comparison


@dataclass
class Views:
    """The comparison's settings (--top, --threshold, --synonyms) and the table views asked for."""

    top: int = 10  # tags and rows shown (0 = all): display only
    threshold: float | None = None  # display threshold, applied before comparing
    matrix: bool = False
    timing: bool = False
    confidence: list[str] = field(default_factory=list)  # tags for --show-confidence
    normaliser: Callable[[str], str] | None = None  # with the synonym map; None: the plain Normaliser
    compare_top: int = 10  # tags compared per model and image (0 = all)
    consensus_min: int | None = None  # k of CONSENSUS (k+ models); None: 3/4 of those answering

    def comparison(self, models: Sequence[ModelEntry]) -> Comparison:
        """The streaming comparison these settings ask for (--top never changes what is compared)."""
        from orchestrator.compare import Comparison

        return Comparison(models, self.compare_top, self.threshold, self.normaliser, self.consensus_min)


def bar(score: float | None, width: int = BAR_WIDTH) -> str:
    """The seed's score bar: filled blocks for the score, light shade for the rest (24 wide)."""
    filled = round(max(0.0, min(1.0, score or 0.0)) * width)
    return "█" * filled + "░" * (width - filled)


def duration(seconds: float | None) -> str:
    """Milliseconds under a second ("450ms"), seconds above ("2.34s"); "-" when unknown."""
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.2f}s"


def figure(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _est(flag: bool) -> str:
    return EST if flag else ""


def new_table(title: str, **kwargs: Any) -> Table:
    return Table(
        title=title,
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
        **kwargs,
    )


def titled(table: Table) -> Group:
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


def consensus_line(items: list[ConsensusItem], k: int, n_models: int, top: int) -> Text:
    """CONSENSUS (k+ models): the tags at least k models gave, each with n/M and its consensus score."""
    line = Text(f"CONSENSUS ({k}+ models): ", style="bold")
    common = [c for c in items if c["n_models"] >= k]
    for i, item in enumerate(_rows(common, top)):
        line.append(("  " if i else "") + item["tag"], style="bold")
        line.append(
            f" {item['n_models']}/{n_models} {item['score']:.2f}{_est(item.get('estimated', False))}", style="dim"
        )
    if top > 0 and len(common) > top:
        line.append(f"  (+{len(common) - top} more)", style="dim")
    if not common:
        line.append(
            f"none (no tag from {k} of the {n_models} models that answered)"
            if n_models
            else "none (no model answered with an ok result)",
            style="dim",
        )
    return line


def agreement_line(agreement: float | None, note: str | None) -> Text:
    text = Text("MODEL AGREEMENT: ", style="bold")
    text.append(f"{agreement:.0%}" if agreement is not None else f"- ({note or 'n/a'})", style="bold cyan")
    return text


def image_summary(compared: ImageComparison, inference_s: float, failed: int, top: int) -> Group:
    """One image's SUMMARY, CONSENSUS (k+ models) and MODEL AGREEMENT, under its model boxes."""
    n = len(compared["answered"])
    line = Text("SUMMARY: ", style="bold")
    line.append(
        f"{compared['summary']['total_unique_tags']} unique tags across {n} model{'s' * (n != 1)}"
        + (f" ({failed} without a result)" if failed else "")
        + f" | inference time: {duration(inference_s)}"
    )
    return Group(
        Rule(style="dim"),
        line,
        consensus_line(compared["consensus"], compared["consensus_min"], n, top),
        agreement_line(compared["agreement"], compared["agreement_note"]),
    )


def image_matrix(compared: ImageComparison, voices: list[str], top: int) -> Group:
    """One photo's tag x model matrix: a mark per model that gave the tag, n/M, a star for consensus tags,
    and a note for tags only one model's closed vocabulary holds."""
    answered, k = compared["answered"], compared["consensus_min"]
    table = new_table("TAG AGREEMENT MATRIX")
    table.add_column("tag", max_width=TAG_WIDTH, overflow="ellipsis", no_wrap=True)
    for m in voices:
        table.add_column(m, justify="center", overflow="fold")
    table.add_column("count", no_wrap=True)
    for item in _rows(compared["consensus"], top):
        marks = [
            Text("✓", style="green") if m in item["models"] else Text("·" if m not in answered else "-", style="dim")
            for m in voices
        ]
        count = f"{item['n_models']}/{len(answered)}" + (" ★" if item["n_models"] >= k else "")
        only = compared.get("only_vocabulary", {}).get(item["tag"])
        table.add_row(item["tag"], *marks, count + (f"  ({only} vocabulary only)" if only else ""))
    if not compared["consensus"]:
        table.add_row(Text("no model gave a tag", style="dim"), *[""] * len(voices), "")
    hidden = len(compared["consensus"]) - top if top > 0 else 0
    legend = Text(
        f"★ = consensus ({k}+ of {len(answered)} models); ✓ gave the tag, - did not, · no ok result"
        + (f"; {hidden} more tag(s) compared, not shown (--top)" if hidden > 0 else ""),
        style="dim",
    )
    return Group(titled(table), legend)


def confidence_bars(lookup: dict[str, dict[str, Any]], tag: str, name: str) -> Group:
    """CONFIDENCE BY MODEL: one tag's score per model for one photo, N/A with the reason."""
    title = f'CONFIDENCE BY MODEL: "{name}"' + (f" (asked: {tag!r})" if name != tag else "")
    grid = Table.grid(padding=(0, 1))
    width = max([len(m) for m in lookup] + [4]) + 1
    for model, c in lookup.items():
        label = Text(f"{model}:".ljust(width))
        if c["score"] is None:
            grid.add_row(label, Text("N/A ", style="yellow"), Text(f"({c['reason']})", style="dim"))
            continue
        marks = [
            m
            for m, on in (
                ("extracted", c.get("estimated")),
                ("zero-shot", c.get("kind") == "zero-shot"),
                ("below the model's own threshold", c.get("below_model_threshold")),
            )
            if on
        ]
        grid.add_row(
            label,
            Text(f"{c['score']:.2f}"),
            Text(bar(c["score"]), style="green") + Text(f"  ({', '.join(marks)})" if marks else "", style="dim"),
        )
    return Group(Text(""), Text(title, style="bold"), grid)


def consensus_table(comparison: ComparisonResult, top: int) -> Table:
    folder = comparison["folder"]
    voices = [m for m in comparison["models"] if m not in comparison.get("synthesis", [])]
    table = new_table(
        f"consensus over {folder['n_images']} image(s): models agreeing x mean confidence (every tag "
        "compared; CONSENSUS above lists those at the cut-off)"
    )
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("#", "right"),
        ("tag", "left"),
        ("models", "right"),
        ("mean conf", "right"),
        ("score", "right"),
        ("images", "right"),
        ("given by", "left"),
    )
    for col, justify in columns:
        table.add_column(
            col,
            justify=justify,
            no_wrap=col != "given by",
            max_width=TAG_WIDTH if col == "tag" else None,
            overflow="ellipsis" if col == "tag" else "fold",
        )
    for rank, item in enumerate(_rows(folder["consensus"], top), 1):
        table.add_row(
            str(rank),
            item["tag"],
            f"{item['n_models']}/{len(voices)}",
            figure(item["mean_confidence"], 3) + _est(item["estimated"]),
            figure(item["score"], 3),
            str(item["images"]),
            ", ".join(item["models"]),
        )
    if not folder["consensus"]:
        table.add_row("", Text("no model gave a tag (no ok cell above the threshold)", style="dim"), "", "", "", "", "")
    return table


def agreement_text(comparison: ComparisonResult) -> Text:
    folder, definitions = comparison["folder"], comparison["definitions"]
    value = folder["agreement"]
    text = Text("model agreement: ", style="bold")
    text.append(figure(value) if value is not None else f"- ({folder.get('agreement_note')})", style="bold cyan")
    text.append(f"\n  = {definitions['agreement']}", style="dim")
    text.append(f"\n  consensus score = {definitions['consensus_score']}", style="dim")
    text.append(f"\n  normalisation: {definitions['normalisation']}", style="dim")
    if comparison.get("synthesis"):
        text.append(f"\n  left out as a synthesis of the others: {', '.join(comparison['synthesis'])}", style="dim")
    return text


def pairwise_table(comparison: ComparisonResult) -> Table | None:
    pairwise = comparison["folder"]["pairwise"]
    models = list(pairwise)
    if len(models) < 2:
        return None
    table = new_table("model x model agreement (mean Jaccard of top tags)")
    table.add_column("")
    for m in models:
        table.add_column(m, justify="right", overflow="fold")
    for a in models:
        table.add_row(a, *(figure(pairwise[a][b]) for b in models))
    return table


def status_table(comparison: ComparisonResult) -> Table:
    table = new_table("cells by status (unique images)")
    table.add_column("model", no_wrap=True)
    table.add_column("statuses", overflow="fold")
    for model, counts in comparison["folder"]["status_counts"].items():
        table.add_row(model, "  ".join(f"{status} {n}" for status, n in counts.items()))
    return table


def matrix_table(comparison: ComparisonResult, top: int) -> Table:
    """Tag x model: images where the tag is in the model's top tags, and its mean score there."""
    voices = [m for m in comparison["models"] if m not in comparison.get("synthesis", [])]
    table = new_table("agreement matrix: images (mean score) per tag and model")
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


_USAGE: tuple[Literal["prompt_tokens", "completion_tokens", "retries"], ...] = (
    "prompt_tokens",
    "completion_tokens",
    "retries",
)
_Summed = Literal["load_s", "warmup_s", "inference_total_s", "total_s"]


def timing_table(comparison: ComparisonResult) -> Table:
    """PERFORMANCE BREAKDOWN: load, warm-up, inference (all images), total per model and a TOTAL row;
    then the per-image spread (mean, p50, p95, images per second). Milliseconds under a second."""
    table = new_table("PERFORMANCE BREAKDOWN (timing per model)")
    timings = comparison["folder"]["timing"]
    # token and retry columns only when a model reports them (captioners, endpoints): what a paid API bills
    usage = [k for k in _USAGE if any(k in t for t in timings.values())]
    names = {"prompt_tokens": "tokens in", "completion_tokens": "tokens out", "retries": "retries"}
    for col in (
        "model",
        "load",
        "warm-up",
        "inference",
        "total",
        "mean",
        "p50",
        "p95",
        "img/s",
        "n",
        *(names[k] for k in usage),
    ):
        table.add_column(
            col,
            justify="left" if col == "model" else "right",
            no_wrap=True,
            max_width=TAG_WIDTH - 6 if col == "model" else None,
            overflow="ellipsis",
        )
    sums: dict[_Summed, float] = {"load_s": 0.0, "warmup_s": 0.0, "inference_total_s": 0.0, "total_s": 0.0}
    n = 0
    for model, t in timings.items():
        table.add_row(
            model,
            duration(t["load_s"]),
            duration(t["warmup_s"]),
            duration(t.get("inference_total_s")),
            duration(t.get("total_s")),
            duration(t["mean_s"]),
            duration(t["p50_s"]),
            duration(t["p95_s"]),
            figure(t["images_per_s"]),
            str(t["n"]),
            *(f"{t[k]:,}" if k in t else "" for k in usage),
        )
        for key in sums:
            sums[key] += t.get(key) or 0.0
        n += t["n"]
    table.add_section()
    table.add_row(
        Text("TOTAL", style="bold"),
        duration(sums["load_s"]),
        duration(sums["warmup_s"]),
        duration(sums["inference_total_s"]),
        Text(duration(sums["total_s"]), style="bold"),
        "",
        "",
        "",
        "",
        str(n),
        *(f"{sum(t.get(k, 0) for t in timings.values()):,}" for k in usage),
    )
    table.caption = comparison["definitions"].get("timing")
    table.caption_justify = "left"
    return table


def total_time(comparison: ComparisonResult) -> float:
    """Every model's load + warm-up + inference seconds (the TOTAL row's total)."""
    return sum(t.get("total_s") or 0.0 for t in comparison["folder"]["timing"].values())


def folder_summary(comparison: ComparisonResult, top: int) -> Group:
    """The folder's SUMMARY, CONSENSUS (k+ models) and MODEL AGREEMENT lines."""
    folder = comparison["folder"]
    answered = folder.get("answered", [])
    n = len(answered)
    line = Text("SUMMARY: ", style="bold")
    line.append(
        f"{folder['summary']['total_unique_tags']} unique tags across {n} model{'s' * (n != 1)}"
        f" | {folder['n_images']} image(s) | total time: {duration(total_time(comparison))}"
    )
    return Group(
        Rule(characters="═"),
        line,
        consensus_line(folder["consensus"], comparison.get("consensus_min", 1), n, top),
        agreement_line(folder["agreement"], folder.get("agreement_note")),
        Rule(characters="═"),
    )


def confidence_view(comparison: ComparisonResult, tag: str, normalise: Callable[[str], str]) -> RenderableType:
    """One tag's mean score per model as bars, over the images where the model gave it; N/A with the reason."""
    name = normalise(tag)
    by_model = comparison["folder"]["confidence"].get(name)
    if not by_model:
        close = difflib.get_close_matches(name, list(comparison["folder"]["confidence"]), n=5, cutoff=0.6)
        hint = f"; close: {', '.join(close)}" if close else ""
        return Text(f"--show-confidence {tag!r}: no model gave {name!r} above the threshold{hint}", style="yellow")
    counts = comparison["folder"]["status_counts"]
    table = new_table(f"confidence for {name!r} across models" + (f" (asked: {tag!r})" if name != tag else ""))
    for col in ("model", "mean", "bar", "images"):
        table.add_column(col, justify="right" if col in ("mean", "images") else "left", no_wrap=True)
    for model in comparison["models"]:
        c = by_model.get(model)
        ok = counts.get(model, {}).get("ok", 0)
        if c is None:
            statuses = ", ".join(f"{s} {n}" for s, n in counts.get(model, {}).items())
            why = "not given" if ok else f"no ok cell: {statuses}"
            table.add_row(model, Text("N/A", style="yellow"), Text(f"({why})", style="dim"), f"0/{ok}")
        else:
            table.add_row(
                model,
                f"{c['mean_score']:.3f}{_est(c['estimated'])}",
                Text(bar(c["mean_score"]), style="green"),
                f"{c['images']}/{ok}",
            )
    table.caption = "mean score over the images where the model gave the tag; images: given / ok cells"
    table.caption_justify = "left"
    return table


def render_comparison(comparison: ComparisonResult, console: Console, views: Views) -> None:
    """The folder summary, then the views asked for."""
    parts: list[RenderableType] = [
        folder_summary(comparison, views.top),
        titled(consensus_table(comparison, views.top)),
        agreement_text(comparison),
    ]
    pairwise = pairwise_table(comparison)
    if pairwise is not None:
        parts.append(titled(pairwise))
    parts.append(titled(status_table(comparison)))
    if views.matrix:
        parts.append(titled(matrix_table(comparison, views.top)))
    if views.timing:
        parts.append(titled(timing_table(comparison)))
    if views.confidence:
        from orchestrator.compare.normalise import Normaliser

        norm = views.normaliser or Normaliser()
        parts += [
            titled(v) if isinstance(v := confidence_view(comparison, tag, norm), Table) else v
            for tag in views.confidence
        ]
    parts.append(Text(comparison["definitions"]["estimated"], style="dim"))
    console.print(Group(*parts))
