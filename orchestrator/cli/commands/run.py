"""`mltag run MODEL PATHS`: one model alone, its runner's stderr shown live."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.cli import options as o
from orchestrator.cli.choices import RunFlags, ViewFlags, models
from orchestrator.cli.commands.analyze import analyze_paths

Model = Annotated[str, typer.Argument(help="One model name (see `mltag models`).")]
ForceOrResume = Annotated[
    bool,
    typer.Option(
        "--force/--resume",
        help="Recompute every cell of this model (default), or skip those the store already has done.",
    ),
]


def run(
    model: Model,
    paths: o.Paths,
    fmt: o.Format = "table",
    out: o.Out = None,
    timeout: o.Timeout = None,
    threshold: o.Threshold = None,
    top: o.Top = 10,
    device: o.Device = "auto",
    dtype: o.Dtype = "auto",
    offline: o.Offline = False,
    weights: o.Weights = None,
    recursive: o.Recursive = True,
    warmup: o.Warmup = False,
    batch_size: o.Batch = 1,
    option: o.Option = None,
    retry: o.Retry = True,
    prompt: o.Prompt = None,
    tags_prompt: o.TagsPrompt = None,
    ask: o.Ask = None,
    quantize: o.Quantize = None,
    store: o.StorePath = None,
    no_store: o.NoStore = False,
    force: ForceOrResume = True,
    rehash: o.Rehash = False,
    show_matrix: o.ShowMatrix = False,
    show_timing: o.ShowTiming = False,
    show_confidence: o.ShowConfidence = None,
    synonyms: o.Synonyms = None,
    exact_decode: o.ExactDecode = False,
    raw: o.Raw = "auto",
    raw_pairs: o.RawPairs = "jpeg",
    compare_top: o.CompareTop = 10,
    consensus_min: o.ConsensusMin = None,
    yes: o.Yes = False,
) -> None:
    """Run ONE model alone, its runner's stderr shown live. It recomputes that model's cells and replaces
    them in the results store (the other models' cells stay): the comparison updates without re-running them."""
    options = RunFlags(
        timeout=timeout,
        threshold=threshold,
        top=top,
        device=device,
        dtype=dtype,
        offline=offline,
        weights=weights,
        warmup=warmup,
        batch_size=batch_size,
        option=option,
        retry=retry,
        prompt=prompt,
        tags_prompt=tags_prompt,
        ask=ask,
        quantize=quantize,
        exact_decode=exact_decode,
        raw=raw,
    ).run_options()
    views = ViewFlags(
        top=top,
        threshold=threshold,
        show_matrix=show_matrix,
        show_timing=show_timing,
        show_confidence=show_confidence,
        synonyms=synonyms,
        compare_top=compare_top,
        consensus_min=consensus_min,
    ).views()
    analyze_paths(
        paths,
        models(model, judges=False),
        options,
        views,
        fmt=fmt,
        out=out,
        recursive=recursive,
        live_logs=True,
        store_path=store,
        no_store=no_store,
        force=force,
        rehash=rehash,
        raw_pairs=raw_pairs,
        yes=yes,
    )
