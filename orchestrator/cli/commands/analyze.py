"""`mltag analyze`: every selected model on every image, raw outputs side by side (and the
analysis body `mltag run` shares)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from orchestrator.cli import options as o
from orchestrator.cli.choices import RunFlags, ViewFlags, check_format, check_weights, judge, models
from orchestrator.cli.console import err, install_cleanup, progress
from orchestrator.cli.follow import LogFollower
from orchestrator.cli.output import emit
from orchestrator.cli.stores import open_store, store_summary
from orchestrator.errors import StoreWriteError, UsageError
from orchestrator.images import RAW_PAIRS, Inside, discover, hash_files, pair_raws
from orchestrator.models.registry import ModelSpec

if TYPE_CHECKING:
    from orchestrator.report.comparison_views import Views
    from orchestrator.run.jobs import RunOptions


def analyze(
    paths: o.Paths,
    models_: o.Models = "all",
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
    verbose: o.Verbose = False,
    warmup: o.Warmup = False,
    batch_size: o.Batch = 1,
    parallel: o.Parallel = 1,
    option: o.Option = None,
    retry: o.Retry = True,
    prompt: o.Prompt = None,
    tags_prompt: o.TagsPrompt = None,
    ask: o.Ask = None,
    quantize: o.Quantize = None,
    judge_: o.Judge = None,
    store: o.StorePath = None,
    no_store: o.NoStore = False,
    force: o.Force = False,
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
    cluster: o.Cluster = None,
    cluster_parallel: o.ClusterParallel = None,
    yes: o.Yes = False,
) -> None:
    """Run the selected models on every image and show their raw outputs side by side."""
    flags = RunFlags(
        timeout=timeout,
        threshold=threshold,
        top=top,
        device=device,
        dtype=dtype,
        offline=offline,
        weights=weights,
        warmup=warmup,
        batch_size=batch_size,
        parallel=parallel,
        option=option,
        retry=retry,
        prompt=prompt,
        tags_prompt=tags_prompt,
        ask=ask,
        quantize=quantize,
        exact_decode=exact_decode,
        raw=raw,
    )
    views = ViewFlags(
        top=top,
        threshold=threshold,
        show_matrix=show_matrix,
        show_timing=show_timing,
        show_confidence=show_confidence,
        synonyms=synonyms,
        compare_top=compare_top,
        consensus_min=consensus_min,
    )
    options, shown = flags.run_options(), views.views()  # every flag checked before the models are chosen
    analyze_paths(
        paths,
        models(models_, judges=False),
        options,
        shown,
        fmt=fmt,
        out=out,
        recursive=recursive,
        live_logs=verbose,
        judge_spec=judge(judge_),
        store_path=store,
        no_store=no_store,
        force=force,
        rehash=rehash,
        cluster=cluster,
        cluster_parallel=cluster_parallel,
        raw_pairs=raw_pairs,
        yes=yes,
    )


def notice_photos_leave(specs: list[ModelSpec], options: RunOptions, yes: bool) -> None:
    """Say, before the first request, which models send the photos off this machine (a hosted API, a
    server elsewhere); `--yes` / MLTAG_YES=1 silences it."""
    from orchestrator.run.jobs import photos_leave

    if yes:
        return
    for name, host in photos_leave(options, specs).items():
        err.print(
            f"[yellow]mltag: {name} sends the photos to {host}: they leave this machine[/] (scaled down, "
            f"as its max_pixels option says); --yes or MLTAG_YES=1 silences this notice",
            highlight=False,
        )


def connect(address: str, replicas: int | None = None) -> Any:
    """--cluster: the connected cluster (orchestrator.cluster), or a ClusterError with the fix."""
    if replicas is not None and replicas < 1:
        raise UsageError("--cluster-parallel must be at least 1")
    from orchestrator.cluster.connect import Cluster

    cluster = Cluster(address)
    nodes = cluster.nodes()
    err.print(
        f"mltag: Ray cluster {address}: {len(nodes)} node(s), {sum(n.cpus for n in nodes):g} CPU, "
        f"{sum(n.gpus for n in nodes):g} GPU",
        highlight=False,
    )
    return cluster


def analyze_paths(
    paths: list[Path],
    specs: list[ModelSpec],
    options: RunOptions,
    views: Views,
    *,
    fmt: str,
    out: Path | None,
    recursive: bool,
    live_logs: bool,
    judge_spec: ModelSpec | None = None,
    store_path: Path | None = None,
    no_store: bool = False,
    force: bool = False,
    rehash: bool = False,
    cluster: str | None = None,
    cluster_parallel: int | None = None,
    raw_pairs: str = "jpeg",
    yes: bool = False,
) -> None:
    """Discover, hash, run every model (then the judge), and write the output; exits with the run's code."""
    from orchestrator.run.launch import kill_all_runners
    from orchestrator.run.pipeline import Analysis

    if store_path is not None and no_store:
        raise UsageError("--store and --no-store exclude each other")
    check_format(fmt, out)
    selected = {m.name for m in specs} | ({judge_spec.name, judge_spec.folder.name} if judge_spec else set())
    unknown = sorted(set(options.weights) - selected)
    if unknown:
        raise UsageError(f"--weights names model(s) not selected: {', '.join(unknown)}")
    scoped = sorted({k.split(".", 1)[0] for k in options.infer_overrides if "." in k} - selected)
    if scoped:
        raise UsageError(f"--option MODEL.KEY=VALUE names model(s) not selected: {', '.join(scoped)}")
    for name, path in options.weights.items():
        if not path.exists():
            raise UsageError(f"--weights {name}={path}: path does not exist")
    check_weights(options.weights, specs + ([judge_spec] if judge_spec else []))
    if raw_pairs not in RAW_PAIRS:
        raise UsageError(f"unknown --raw-pairs {raw_pairs!r} ({', '.join(RAW_PAIRS)})")
    inside: Inside = {}  # the photos inside archives and datasets given (their members, read in place)
    files = discover(paths, recursive, inside, offline=options.offline)
    paired: dict[Path, list[Path]] = {}
    if raw_pairs == "jpeg":  # a RAW beside its JPEG is not read at all
        files, paired = pair_raws(files)
    notice_photos_leave(specs + ([judge_spec] if judge_spec else []), options, yes)
    connected = connect(cluster, cluster_parallel) if cluster else None  # fails fast, before any hashing
    install_cleanup()
    store = None if no_store else open_store(store_path, paths, create=True)
    if connected is not None:
        from orchestrator.cluster.analysis import ClusterAnalysis

        analysis: Analysis = ClusterAnalysis(
            [], specs, options, judge=judge_spec, store=store, force=force, cluster=connected, replicas=cluster_parallel
        )
    else:
        analysis = Analysis([], specs, options, judge=judge_spec, store=store, force=force)
        analysis.start_early()  # the first model loads while the files are hashed
    with progress() as bar:
        task = bar.add_task("hashing", total=len(files))
        # The store's stat cache: a file unchanged since it was last hashed is not read (--rehash reads it).
        analysis.set_images(
            hash_files(
                files,
                lambda done, total: bar.update(task, completed=done),
                seen_as=paired,
                cache=store,
                rehash=rehash,
                inside=inside,
            )
        )
    images = analysis.images
    err.print(
        f"mltag: {len(images)} image(s) x {len(specs)} model(s): {', '.join(m.name for m in specs)}", highlight=False
    )
    unreadable = sum(1 for img in images if img.error)
    if unreadable:
        err.print(
            f"[yellow]{unreadable} file(s) cannot be read: each is a bad_image cell with the reason[/]", highlight=False
        )
    follower = LogFollower(analysis.log_dir) if live_logs else None
    with progress() as bar:
        tasks = {m.name: bar.add_task(m.name, total=len(analysis.unique)) for m in analysis.reported_models}

        def report_progress(model: str, done: int, total: int) -> None:
            bar.update(tasks[model], completed=done)
            if not err.is_terminal:
                err.print(f"  {model}: {done}/{total}", highlight=False)

        try:
            results = analysis.run(report_progress)
        except KeyboardInterrupt:
            kill_all_runners()
            analysis.close_run("interrupted")
            err.print("interrupted: all runners stopped" + (f"; results so far are in {store.path}" if store else ""))
            raise typer.Exit(130) from None
        except StoreWriteError:
            kill_all_runners()
            analysis.close_run("failed")
            raise
        finally:
            if follower:
                follower.stop()
    if store is not None:
        store_summary(analysis)
    for m in results.models:
        if m["status"] != "ok":
            fix = f"\n  fix: {m['fix']}" if m["fix"] else ""
            err.print(f"[yellow]{m['name']}: {m['status']}: {m['message']}[/]{fix}", highlight=False)
    try:
        emit(results, fmt, out, views)
    finally:
        analysis.close()
    raise typer.Exit(analysis.exit_code())
