"""`mltag judge`: a judge merges each stored image's model outputs; its column is stored beside theirs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli import options as o
from orchestrator.cli.choices import RunFlags, ViewFlags, check_format, check_weights
from orchestrator.cli.choices import judge as judge_spec
from orchestrator.cli.commands.analyze import notice_photos_leave
from orchestrator.cli.console import err, install_cleanup
from orchestrator.cli.output import emit
from orchestrator.cli.stores import load_stored, store_summary
from orchestrator.images import ImageRef

Under = Annotated[
    list[Path] | None,
    typer.Argument(
        help="Judge the stored images recorded under these files or folders (default: all).", show_default=False
    ),
]
JudgeName = Annotated[str, typer.Option("--judge", help="The judge model (kind judge).")]
Whose = Annotated[
    str, typer.Option("--models", "-m", help="Whose stored outputs to merge: all, or comma-separated names.")
]


def judge(
    paths: Under = None,
    judge_: JudgeName = "qwen25-judge",
    store: o.StoredFrom = None,
    models_: Whose = "all",
    fmt: o.Format = "table",
    out: o.Out = None,
    timeout: o.Timeout = None,
    device: o.Device = "auto",
    dtype: o.Dtype = "auto",
    offline: o.Offline = False,
    weights: o.Weights = None,
    option: o.Option = None,
    quantize: o.Quantize = None,
    yes: o.Yes = False,
) -> None:
    """Merge each stored image's model outputs with a judge LLM; its column is stored beside theirs."""
    from orchestrator.run.pipeline import Analysis
    from orchestrator.store.documents import from_store

    spec = judge_spec(judge_)
    assert spec is not None  # a name was given
    check_format(fmt, out)
    options = RunFlags(
        timeout=timeout, device=device, dtype=dtype, offline=offline, weights=weights, option=option, quantize=quantize
    ).run_options()
    check_weights(options.weights, [spec])
    stored = load_stored(store, paths, models_, exclude=spec.name)
    kinds = {m["name"]: m.get("kind") or "tagger" for m in stored.results.models}
    images = [ImageRef(Path(row.path), row.sha256, row.size_bytes) for row in stored.db.image_rows(stored.under)]
    notice_photos_leave([spec], options, yes)
    install_cleanup()
    analysis = Analysis(images, [], options, judge=spec, store=stored.db, judged_models=kinds)
    err.print(
        f"mltag: judging {len(analysis.unique)} image(s) from {', '.join(stored.models)} with {spec.name}",
        highlight=False,
    )
    analysis.run(lambda model, done, total: err.print(f"  {model}: {done}/{total}", highlight=False))
    merged = from_store(stored.db, stored.under, [*stored.models, spec.name])
    store_summary(analysis)
    try:
        emit(merged, fmt, out, ViewFlags().views())
    finally:
        analysis.close()
    raise typer.Exit(analysis.exit_code())
