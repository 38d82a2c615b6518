"""The `mltag` command line (typer). Thin: parsing, messages and exit codes; work is elsewhere.

Exit codes: 0 every cell ok or no_tags; 1 some cell failed (or a model is unhealthy); 2 usage.
Without --out, json/csv go to stdout and nothing else does; progress and logs go to stderr.
"""

from __future__ import annotations

import atexit
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator import envbuild
from orchestrator.images import ImageDiscoveryError, ImageRef, discover, hash_files
from orchestrator.registry import ModelSpec, RegistryError, load_registry, select

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Run many image tagging / captioning models on the same photos and compare them.")
err = Console(stderr=True)
FORMATS = ("table", "json", "jsonl", "csv", "html")

# -- shared options (analyze and run take the same flags) --------------------------------------------
Paths = Annotated[list[Path], typer.Argument(help="Image files or folders.", show_default=False)]
Format = Annotated[str, typer.Option("--format", "-f", help="table | json | jsonl | csv | html (html needs --out)")]
Out = Annotated[Path | None, typer.Option("--out", "-o", help="Write the output to this file instead of stdout.")]
Timeout = Annotated[float | None, typer.Option("--timeout", help="Seconds per image before the runner is killed "
                                                                 "(default: the model's timeout_s, else 60).")]
Threshold = Annotated[float | None, typer.Option("--threshold", help="Display threshold; raw scores stay in JSON.")]
Top = Annotated[int, typer.Option("--top", help="Tags shown per model, and rows shown, in the table (0 = all); "
                                                "display only: the comparison uses --compare-top.")]
CompareTop = Annotated[int, typer.Option("--compare-top", help="Tags per model and image that the matrix, the "
                                                               "consensus and the agreement compare (0 = every tag "
                                                               "above --threshold).")]
ConsensusMin = Annotated[int | None, typer.Option("--consensus-min", metavar="K", help="CONSENSUS lists the tags at "
                                                                                      "least K models gave (default: "
                                                                                      "3/4 of the models that "
                                                                                      "answered, rounded up).")]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | mps")]
Dtype = Annotated[str, typer.Option("--dtype", help="auto | float32 | bfloat16 | float16 (auto: bf16/fp16 on GPU, "
                                                    "fp32 on CPU)")]
Offline = Annotated[bool, typer.Option("--offline", help="Never touch the network (HF cache / --weights only).")]
Weights = Annotated[list[str] | None, typer.Option("--weights", help="MODEL=PATH local weights override (repeatable).")]
Recursive = Annotated[bool, typer.Option("--recursive/--no-recursive", help="Search folders recursively.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show the runners' stderr live.")]
Warmup = Annotated[bool, typer.Option("--warmup", help="Time one warm-up inference after loading.")]
Batch = Annotated[int, typer.Option("--batch-size", help="Images per infer request.")]
ExactDecode = Annotated[bool, typer.Option(
    "--exact-decode", help="Decode every photo at full size, as each model's reference preprocessing does "
                           "(default: JPEGs are decoded at the smallest 1/2, 1/4, 1/8 scale the model can use).")]
Parallel = Annotated[int, typer.Option("--parallel", help="Models run at once.")]
Option = Annotated[list[str] | None, typer.Option("--option", help="KEY=VALUE adapter option for every model, or "
                                                                   "MODEL.KEY=VALUE for one (VALUE parsed as JSON "
                                                                   "when it can be).")]
Retry = Annotated[bool, typer.Option("--retry-crashed/--no-retry-crashed",
                                     help="Retry an image once after it crashed the runner.")]
StorePath = Annotated[Path | None, typer.Option(
    "--store", help="Results store (SQLite), written as cells arrive; a re-run skips cells already done with the "
                    "same model revision and options. Default: results.sqlite in mltag's user data folder "
                    "($MLTAG_HOME, else e.g. ~/.local/share/mltag), one store for every archive; nothing is "
                    "ever written inside the analysed folders.")]
NoStore = Annotated[bool, typer.Option("--no-store", help="One-off: neither read nor write a results store.")]
Force = Annotated[bool, typer.Option("--force", help="Recompute cells the store already has done.")]
Prompt = Annotated[str | None, typer.Option("--prompt", help="Captioners: the description prompt (default: each "
                                                             "model.toml's [infer] prompt).")]
TagsPrompt = Annotated[str | None, typer.Option("--tags-prompt", help="Captioners: the prompt asking for a "
                                                                      "comma-separated tag list.")]
Ask = Annotated[str | None, typer.Option("--ask", help="Captioners: caption | tags | both (default: model.toml's "
                                                       "ask, usually caption). tags/both skip captioners without a "
                                                       "tags prompt (BLIP).")]
Quantize = Annotated[int | None, typer.Option("--quantize", help="Captioners and the judge: load in 4 or 8 bits "
                                                                 "(bitsandbytes, CUDA only).")]
Judge = Annotated[str | None, typer.Option("--judge", help="After the models, merge their outputs per image with "
                                                           "this judge: a text LLM (qwen25-judge), or any "
                                                           "captioner, which also sees the photo (e.g. qwen25vl; "
                                                           "its column: qwen25vl-judge).")]
# -- the comparison (orchestrator/compare; shown by table, json and html) ------------------------------------------
ShowMatrix = Annotated[bool, typer.Option("--show-matrix", help="Table: the tag x model agreement matrix (images, "
                                                                "mean score).")]
ShowTiming = Annotated[bool, typer.Option("--show-timing", help="Table: load, warm-up, mean / p50 / p95 inference "
                                                                "and images per second per model.")]
ShowConfidence = Annotated[list[str] | None, typer.Option("--show-confidence", metavar="TAG",
                                                          help="Table: TAG's confidence across models as bars "
                                                               "(repeatable).")]
Synonyms = Annotated[Path | None, typer.Option("--synonyms", help="Synonym map for comparing tags: one "
                                                                  "'derelict = abandoned' per line, # comments.")]


def _stdout() -> Console:
    """Rich assumes 80 columns when piped; a piped table should not squeeze its columns."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _registry() -> dict[str, ModelSpec]:
    try:
        return load_registry()
    except RegistryError as exc:
        fail(str(exc))


def _select(names: str, judges: bool = True) -> list[ModelSpec]:
    try:
        specs = select(_registry(), names)
    except RegistryError as exc:
        fail(str(exc))
    if not judges:
        for spec in specs:
            if spec.kind == "judge":
                fail(f"'{spec.name}' is a judge: it merges the other models' outputs; use --judge {spec.name}")
    return specs


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            fail(f"{flag} expects KEY=VALUE, got {value!r}")
        out[key.strip()] = rest.strip()
    return out


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _install_cleanup() -> None:
    from orchestrator.supervisor import kill_all_runners

    atexit.register(kill_all_runners)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run atexit on SIGTERM too


def _analyze(paths: list[Path], models: list[ModelSpec], fmt: str, out: Path | None, recursive: bool,
             options: Any, live_logs: bool, judge: ModelSpec | None = None, store_path: Path | None = None,
             no_store: bool = False, force: bool = False, views: Any = None) -> None:
    from orchestrator.pipeline import Analysis
    from orchestrator.store import StoreError

    if store_path is not None and no_store:
        fail("--store and --no-store exclude each other")
    _check_format(fmt, out)
    selected = {m.name for m in models} | ({judge.name, judge.folder.name} if judge else set())
    unknown = sorted(set(options.weights) - selected)
    if unknown:
        fail(f"--weights names model(s) not selected: {', '.join(unknown)}")
    scoped = sorted({k.split(".", 1)[0] for k in options.infer_overrides if "." in k} - selected)
    if scoped:
        fail(f"--option MODEL.KEY=VALUE names model(s) not selected: {', '.join(scoped)}")
    for name, path in options.weights.items():
        if not path.exists():
            fail(f"--weights {name}={path}: path does not exist")
    try:
        files = discover(paths, recursive)
    except ImageDiscoveryError as exc:
        fail(str(exc))
    _install_cleanup()
    store = None if no_store else _open_store(store_path, paths, create=True)
    with _progress() as bar:
        task = bar.add_task("hashing", total=len(files))
        images = hash_files(files, lambda done, total: bar.update(task, completed=done))
    try:
        analysis = Analysis(images, models, options, judge=judge, store=store, force=force)
    except StoreError as exc:
        fail(str(exc))
    err.print(f"mltag: {len(images)} image(s) x {len(models)} model(s): {', '.join(m.name for m in models)}",
              highlight=False)
    unreadable = sum(1 for img in images if img.error)
    if unreadable:
        err.print(f"[yellow]{unreadable} file(s) cannot be read: each is a bad_image cell with the reason[/]",
                  highlight=False)
    follower = _LogFollower(analysis) if live_logs else None
    with _progress() as bar:
        tasks = {m.name: bar.add_task(m.name, total=len(analysis.unique)) for m in analysis.reported_models}

        def progress(model: str, done: int, total: int) -> None:
            bar.update(tasks[model], completed=done)
            if not err.is_terminal:
                err.print(f"  {model}: {done}/{total}", highlight=False)

        try:
            results = analysis.run(progress)
        except KeyboardInterrupt:
            from orchestrator.supervisor import kill_all_runners

            kill_all_runners()
            analysis.close_run("interrupted")
            err.print("interrupted: all runners stopped" + (f"; results so far are in {store.path}" if store else ""))
            raise typer.Exit(130) from None
        except StoreError as exc:
            from orchestrator.supervisor import kill_all_runners

            kill_all_runners()
            analysis.close_run("failed")
            fail(str(exc), code=1)
        finally:
            if follower:
                follower.stop()
    _store_summary(analysis, persistent=store is not None)
    for m in results.models:
        if m["status"] != "ok":
            fix = f"\n  fix: {m['fix']}" if m["fix"] else ""
            err.print(f"[yellow]{m['name']}: {m['status']}: {m['message']}[/]{fix}", highlight=False)
    try:
        _emit(results, fmt, out, views)
    finally:
        analysis.close()
    raise typer.Exit(analysis.exit_code())


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err, transient=True, disable=not err.is_terminal)


def _check_format(fmt: str, out: Path | None) -> None:
    if fmt not in FORMATS:
        fail(f"unknown --format {fmt!r} (choose from {', '.join(FORMATS)})")
    if fmt == "html" and out is None:
        fail("--format html writes one self-contained file: add --out FILE (e.g. --out report.html)")


def _views(top: int, threshold: float | None, matrix: bool = False, timing: bool = False,
           confidence: list[str] | None = None, synonyms: Path | None = None, compare_top: int = 10,
           consensus_min: int | None = None) -> Any:
    """The comparison's settings and the table's views; a bad synonym file stops here, before any model runs."""
    from orchestrator.compare import Normaliser, SynonymError, load_synonyms
    from orchestrator.report.summary import Views

    if top < 0:
        fail("--top must be 0 (all) or more")
    if compare_top < 0:
        fail("--compare-top must be 0 (all) or more")
    if consensus_min is not None and consensus_min < 1:
        fail("--consensus-min must be 1 or more")
    try:
        normaliser = Normaliser(load_synonyms(synonyms) if synonyms else None)
    except SynonymError as exc:
        fail(str(exc))
    return Views(top=top, threshold=threshold, matrix=matrix, timing=timing, confidence=list(confidence or []),
                 normaliser=normaliser, compare_top=compare_top, consensus_min=consensus_min)


def _emit(results: Any, fmt: str, out: Path | None, views: Any) -> None:
    """The one format dispatch (analyze, run, judge and report): results streamed to stdout or --out."""
    from orchestrator.report.output import OutputError, open_output

    try:
        with open_output(out) as stream:
            if fmt == "table":
                from orchestrator.report.table import render

                render(results, Console(file=stream, width=160) if out else _stdout(), views)
            elif fmt == "html":
                from orchestrator.report.html import write_html

                write_html(results, stream, views)
            elif fmt == "csv":
                from orchestrator.report.flat import write_csv

                write_csv(results, stream, views.threshold)
            elif fmt == "jsonl":
                from orchestrator.report.flat import write_jsonl

                write_jsonl(results, stream, views.comparison(results.models))
            else:
                from orchestrator.report.flat import write_json

                write_json(results, stream, views.comparison(results.models))
    except OutputError as exc:
        fail(str(exc), code=1)
    if out:
        err.print(f"wrote {out}")


def _write_text(text: str, out: Path | None) -> None:
    """Text to --out (atomically), else stdout, ending in one newline."""
    from orchestrator.report.output import OutputError, open_output

    try:
        with open_output(out) as stream:
            stream.write(text if text.endswith("\n") else text + "\n")
    except OutputError as exc:
        fail(str(exc), code=1)


def _open_store(explicit: Path | None, paths: list[Path], create: bool) -> Any:
    """The results store: --store, else the one in the user's data folder (MLTAG_HOME overrides). A store
    an older mltag left inside the analysed folders is read (never written) and merged into it."""
    from orchestrator.store import ResultStore, StoreError, default_store_path, legacy_stores

    path = explicit or default_store_path()
    legacy = legacy_stores(paths or [Path.cwd()]) if explicit is None else []
    try:
        db = ResultStore(path, create=create or bool(legacy))
        for old in legacy:
            merged = db.import_store(old)
            if merged is not None:
                err.print(f"found the results store of an older mltag in {old}: {merged} result(s) merged into "
                          f"{db.path}, where results now go ({old} was only read; you may delete it)",
                          highlight=False, soft_wrap=True)
    except StoreError as exc:
        fail(str(exc))
    return db


def _store_summary(analysis: Any, persistent: bool) -> None:
    if not persistent:
        return
    reused = sum(analysis.reused.values())
    computed = len(analysis.unique) * len(analysis.reported_models) - reused
    err.print(f"store: {analysis.store.path}: {reused} result(s) reused, {computed} computed (run {analysis.run_id})",
              highlight=False, soft_wrap=True)


class _LogFollower:
    """Copies the runners' log files to stderr as they grow (mltag run, -v)."""

    def __init__(self, analysis: Any) -> None:
        self.dir = analysis.log_dir
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        offsets: dict[Path, int] = {}
        while True:
            stopping = self._stop.is_set()
            for log in sorted(self.dir.glob("*.log")):
                with open(log, "rb") as f:
                    f.seek(offsets.get(log, 0))
                    data = f.read()
                    offsets[log] = f.tell()
                for line in data.decode(errors="replace").splitlines():
                    err.print(f"[dim]{log.stem} |[/] {line}", highlight=False, markup=True)
            if stopping:
                return
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=2)


def _options(timeout: float | None, threshold: float | None, top: int, device: str, dtype: str, offline: bool,
             weights: list[str] | None, warmup: bool, batch_size: int, parallel: int, option: list[str] | None,
             retry: bool, prompts: tuple[str | None, str | None, str | None] = (None, None, None),
             quantize: int | None = None) -> Any:
    from orchestrator.pipeline import RunOptions

    prompt, tags_prompt, ask = prompts
    if ask is not None and ask not in ("caption", "tags", "both"):
        fail(f"unknown --ask {ask!r} (caption, tags, both)")
    if quantize is not None and quantize not in (4, 8):
        fail(f"--quantize takes 4 or 8, got {quantize}")
    for flag, text in (("--prompt", prompt), ("--tags-prompt", tags_prompt)):
        if text is not None and not text.strip():
            fail(f"{flag} must not be empty")

    if batch_size < 1 or parallel < 1:
        fail("--batch-size and --parallel must be at least 1")
    if device not in ("auto", "cpu", "cuda", "mps"):
        fail(f"unknown --device {device!r} (auto, cpu, cuda, mps)")
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        fail(f"unknown --dtype {dtype!r} (auto, float32, bfloat16, float16)")
    return RunOptions(timeout_s=timeout, threshold=threshold, top=top, device=device, dtype=dtype, offline=offline,
                      weights={k: Path(v).expanduser() for k, v in _pairs(weights, "--weights").items()},
                      warmup=warmup, batch_size=batch_size, parallel=parallel, retry_crashed=retry,
                      prompt=prompt, tags_prompt=tags_prompt, ask=ask, quantize=quantize,
                      infer_overrides={k: _parse_value(v) for k, v in _pairs(option, "--option").items()})


@app.command()
def analyze(paths: Paths,
            models: Annotated[str, typer.Option("--models", "-m", help="all, or comma-separated names")] = "all",
            fmt: Format = "table", out: Out = None, timeout: Timeout = None, threshold: Threshold = None,
            top: Top = 10, device: Device = "auto", dtype: Dtype = "auto", offline: Offline = False,
            weights: Weights = None, recursive: Recursive = True, verbose: Verbose = False, warmup: Warmup = False,
            batch_size: Batch = 1,
            parallel: Parallel = 1, option: Option = None, retry: Retry = True, prompt: Prompt = None,
            tags_prompt: TagsPrompt = None, ask: Ask = None, quantize: Quantize = None, judge: Judge = None,
            store: StorePath = None, no_store: NoStore = False, force: Force = False, show_matrix: ShowMatrix = False,
            show_timing: ShowTiming = False, show_confidence: ShowConfidence = None,
            synonyms: Synonyms = None, exact_decode: ExactDecode = False, compare_top: CompareTop = 10,
            consensus_min: ConsensusMin = None) -> None:
    """Run the selected models on every image and show their raw outputs side by side."""
    opts = _options(timeout, threshold, top, device, dtype, offline, weights, warmup, batch_size, parallel, option,
                    retry, (prompt, tags_prompt, ask), quantize)
    opts.exact_decode = exact_decode
    views = _views(top, threshold, show_matrix, show_timing, show_confidence, synonyms, compare_top, consensus_min)
    _analyze(paths, _select(models, judges=False), fmt, out, recursive, opts, live_logs=verbose, judge=_judge(judge),
             store_path=store, no_store=no_store, force=force, views=views)


def _judge(name: str | None) -> ModelSpec | None:
    """--judge NAME: a text judge (kind judge), or any captioner, which then judges seeing the photo."""
    from orchestrator.judging import vision_judge

    if name is None:
        return None
    [spec] = _select(name)
    if spec.kind == "captioner":
        return vision_judge(spec)
    if spec.kind != "judge":
        judges = ", ".join(s.name for s in _registry().values() if s.kind in ("judge", "captioner"))
        fail(f"--judge {name}: '{name}' is a {spec.kind}, not a judge: a text judge or any captioner (which then "
             f"sees the photo) can judge ({judges})")
    return spec


@app.command()
def run(model: Annotated[str, typer.Argument(help="One model name (see `mltag models`).")], paths: Paths,
        fmt: Format = "table", out: Out = None, timeout: Timeout = None, threshold: Threshold = None,
        top: Top = 10, device: Device = "auto", dtype: Dtype = "auto", offline: Offline = False,
        weights: Weights = None, recursive: Recursive = True, warmup: Warmup = False, batch_size: Batch = 1,
        option: Option = None,
        retry: Retry = True, prompt: Prompt = None, tags_prompt: TagsPrompt = None, ask: Ask = None,
        quantize: Quantize = None, store: StorePath = None, no_store: NoStore = False,
        force: Annotated[bool, typer.Option("--force/--resume", help="Recompute every cell of this model (default), "
                                            "or skip those the store already has done.")] = True,
        show_matrix: ShowMatrix = False, show_timing: ShowTiming = False, show_confidence: ShowConfidence = None,
        synonyms: Synonyms = None, exact_decode: ExactDecode = False, compare_top: CompareTop = 10,
        consensus_min: ConsensusMin = None) -> None:
    """Run ONE model alone, its runner's stderr shown live. It recomputes that model's cells and replaces
    them in the results store (the other models' cells stay): the comparison updates without re-running them."""
    opts = _options(timeout, threshold, top, device, dtype, offline, weights, warmup, batch_size, 1, option, retry,
                    (prompt, tags_prompt, ask), quantize)
    opts.exact_decode = exact_decode
    views = _views(top, threshold, show_matrix, show_timing, show_confidence, synonyms, compare_top, consensus_min)
    _analyze(paths, _select(model, judges=False), fmt, out, recursive, opts, live_logs=True, store_path=store,
             no_store=no_store, force=force, views=views)


StoreOption = Annotated[Path | None, typer.Option(
    "--store", help="The results store. Default: the one in mltag's user data folder ($MLTAG_HOME overrides).")]


def _stored(store: Path | None, paths: list[Path] | None, models: str, exclude: str | None = None) -> Any:
    """The store, the stored models asked for (checked), and the results under `paths` (report, judge, eval)."""
    from orchestrator import results

    db = _open_store(store, paths or [], create=False)
    stored = [name for name in db.models() if name != exclude]
    if not stored:
        fail(f"the results store {db.path} holds no results yet: `mltag analyze PATHS` fills it")
    names = stored if models == "all" else [m.strip() for m in models.split(",") if m.strip()]
    unknown = [n for n in names if n not in stored]
    if unknown:
        fail(f"no results for model(s) {', '.join(unknown)} in {db.path} (stored: {', '.join(stored)})")
    under = [Path(p) for p in paths] if paths else None
    if under is not None and next(db.iter_images(under), None) is None:
        fail(f"no stored image under {', '.join(map(str, under))} in {db.path}: `mltag report` lists every stored "
             "image")
    return db, names, results.from_store(db, under, names)


@app.command()
def report(paths: Annotated[list[Path] | None, typer.Argument(
               help="Show the stored images recorded under these files or folders (default: every stored image).",
               show_default=False)] = None,
           store: StoreOption = None,
           models: Annotated[str, typer.Option("--models", "-m", help="all, or comma-separated names")] = "all",
           fmt: Format = "table", out: Out = None,
           html: Annotated[Path | None, typer.Option("--html", help="Write the HTML report to this file (the same as "
                                                                    "--format html --out FILE).")] = None,
           threshold: Threshold = None, top: Top = 10, show_matrix: ShowMatrix = False,
           show_timing: ShowTiming = False, show_confidence: ShowConfidence = None,
           synonyms: Synonyms = None, compare_top: CompareTop = 10, consensus_min: ConsensusMin = None) -> None:
    """Render stored results (every model's cells for every image) without running any model."""
    views = _views(top, threshold, show_matrix, show_timing, show_confidence, synonyms, compare_top, consensus_min)
    if html is not None:
        if fmt not in ("table", "html") or (out is not None and out != html):
            fail("--html FILE is short for --format html --out FILE: give one or the other")
        fmt, out = "html", html
    _check_format(fmt, out)
    db, names, stored = _stored(store, paths, models)
    err.print(f"store: {db.path}: {len(names)} model(s) from {len(stored.options['runs'])} run(s)",
              highlight=False, soft_wrap=True)
    try:
        _emit(stored, fmt, out, views)
    finally:
        db.close()


@app.command("judge")
def judge_stored(paths: Annotated[list[Path] | None, typer.Argument(
                     help="Judge the stored images recorded under these files or folders (default: all).",
                     show_default=False)] = None,
                 judge: Annotated[str, typer.Option("--judge", help="The judge model (kind judge).")] = "qwen25-judge",
                 store: StoreOption = None,
                 models: Annotated[str, typer.Option("--models", "-m", help="Whose stored outputs to merge: all, or "
                                                                            "comma-separated names.")] = "all",
                 fmt: Format = "table", out: Out = None, timeout: Timeout = None, device: Device = "auto",
                 dtype: Dtype = "auto", offline: Offline = False, weights: Weights = None, option: Option = None,
                 quantize: Quantize = None) -> None:
    """Merge each stored image's model outputs with a judge LLM; its column is stored beside theirs."""
    from orchestrator import results
    from orchestrator.pipeline import Analysis
    from orchestrator.store import StoreError

    spec = _judge(judge)
    assert spec is not None
    _check_format(fmt, out)
    opts = _options(timeout, None, 10, device, dtype, offline, weights, False, 1, 1, option, True, quantize=quantize)
    db, names, stored = _stored(store, paths, models, exclude=spec.name)
    kinds = {m["name"]: m.get("kind") or "tagger" for m in stored.models}
    images = [ImageRef(Path(img["path"]), img["sha256"], img["size_bytes"]) for img in db.iter_images(
        [Path(p) for p in paths] if paths else None)]
    _install_cleanup()
    analysis = Analysis(images, [], opts, judge=spec, store=db, judged_models=kinds)
    err.print(f"mltag: judging {len(analysis.unique)} image(s) from {', '.join(names)} with {spec.name}",
              highlight=False)
    try:
        analysis.run(lambda model, done, total: err.print(f"  {model}: {done}/{total}", highlight=False))
    except StoreError as exc:
        fail(str(exc), code=1)
    merged = results.from_store(db, [Path(p) for p in paths] if paths else None, [*names, spec.name])
    _store_summary(analysis, persistent=True)
    try:
        _emit(merged, fmt, out, _views(10, None))
    finally:
        analysis.close()
    raise typer.Exit(analysis.exit_code())


@app.command("eval")
def eval_labels(labels: Annotated[Path, typer.Option("--labels", help="CSV: image path (relative to the CSV) or "
                                                                     "sha256, then its true tags, comma-separated.")],
                paths: Annotated[list[Path] | None, typer.Argument(
                    help="Evaluate the stored images under these files or folders (default: all).",
                    show_default=False)] = None,
                store: StoreOption = None,
                results: Annotated[Path | None, typer.Option("--results", help="A saved `--format json` document "
                                                                              "instead of the store.")] = None,
                synonyms: Synonyms = None,
                fmt: Annotated[str, typer.Option("--format", "-f", help="table | json | csv")] = "table",
                out: Out = None) -> None:
    """Precision, recall and F1 of each model against your own labels: which model tags your archive best."""
    from orchestrator.evaluate import LabelsError, evaluate, read_labels, to_csv
    from orchestrator.report.summary import evaluation_table

    if fmt not in ("table", "json", "csv"):
        fail(f"unknown --format {fmt!r} (choose from table, json, csv)")
    if results is not None and (store is not None or paths):
        fail("--results FILE replaces the store: give it alone, without --store or PATHS")
    views = _views(10, None, synonyms=synonyms)
    try:
        rows = read_labels(labels)
    except LabelsError as exc:
        fail(str(exc))
    if results is not None:
        document = _saved_document(results)
    else:
        db, _, stored = _stored(store, paths, "all")
        document = _labelled_document(stored, {row.key for row in rows})
        db.close()
    evaluation = evaluate(document, rows, views.normaliser)
    if not evaluation["labelled"]:
        fail(f"none of the {len(rows)} label row(s) in {labels} names an image in the results (first: "
             f"{rows[0].ref!r}): paths are relative to the CSV's folder, or give the sha256")
    if fmt == "table":
        from orchestrator.report.output import OutputError, open_output

        try:
            with open_output(out) as stream:
                (Console(file=stream, width=160) if out else _stdout()).print(evaluation_table(evaluation))
        except OutputError as exc:
            fail(str(exc), code=1)
    else:
        _write_text(json.dumps(evaluation, indent=2) if fmt == "json" else to_csv(evaluation), out)
    if out:
        err.print(f"wrote {out}")


def _labelled_document(stored: Any, keys: set[str]) -> dict[str, Any]:
    """The stored document with the cells of labelled images only (keys: sha256s or resolved paths):
    every image is listed (unlabelled ones are counted), only the labelled keep their results."""
    images = []
    for image in stored.images():
        if image["sha256"] not in keys and str(Path(image["path"]).resolve()) not in keys:
            image["results"] = {}
        images.append(image)
    return {**stored.head, "models": stored.models, "images": images}


def _saved_document(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"cannot read --results {path}: {exc}; it must be the output of `mltag analyze --format json`")
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        fail(f"--results {path} is not an mltag result document (no 'images' list): save one with "
             "`mltag analyze PATHS --format json --out FILE`")
    return document


@app.command()
def models() -> None:
    """The registry: name, kind, env, hub id@revision, env built?, weights cached?"""
    from orchestrator.health import weights_cached

    table = Table(title="mltag models")
    for col in ("name", "kind", "env", "hub id @ revision", "remote code", "env built", "weights", "size"):
        table.add_column(col, no_wrap=col != "size")
    for spec in _registry().values():
        state, _ = envbuild.env_state(spec.env)
        table.add_row(spec.name, spec.kind, spec.env, f"{spec.hub_id}@{spec.revision[:12]}",
                      "[yellow]yes[/]" if spec.remote_code else "no",
                      "[green]built[/]" if state == "ready" else f"[yellow]{state}[/]",
                      f"[dim]{spec.server} server[/]" if spec.server else
                      "[green]cached[/]" if weights_cached(spec) else "[dim]not cached[/]", spec.size)
    _stdout().print(table)


@app.command()
def health(names: Annotated[list[str] | None, typer.Argument(help="Models to check (default: all).")] = None,
           deep: Annotated[bool, typer.Option("--deep", help="Also run one inference on a generated image.")] = False,
           weights: Weights = None, device: Device = "auto") -> None:
    """Check each model: env present and current, runner answers hello, weights present."""
    from orchestrator.health import model_health

    specs = _select(",".join(names)) if names else list(_registry().values())
    local = {k: Path(v).expanduser() for k, v in _pairs(weights, "--weights").items()}
    _install_cleanup()
    console = _stdout()
    unhealthy = 0
    for spec in specs:
        report = model_health(spec, local.get(spec.name), deep=deep, device=device)
        mark = "[green]healthy[/]" if report.healthy else "[red]unhealthy[/]"
        console.print(f"[bold]{spec.name}[/] {mark}")
        for check in report.checks:
            if check.problem is None:
                console.print(f"  [green]ok[/]   {check.name}: {check.detail}", highlight=False)
            else:
                console.print(f"  [red]FAIL[/] {check.name}: {check.problem}", highlight=False)
                if check.fix:
                    console.print(f"       fix: [cyan]{check.fix}[/]", highlight=False)
        unhealthy += not report.healthy
    raise typer.Exit(1 if unhealthy else 0)


@app.command("setup-envs")
def setup_envs(names: Annotated[str, typer.Option("--models", "-m", help="all, or comma-separated names")] = "all",
               force: Annotated[bool, typer.Option("--force", help="Rebuild even if current.")] = False) -> None:
    """Build the venvs the selected models need (uv, deduplicated, locked)."""
    envs = sorted({spec.env for spec in _select(names)})
    for env in envs:
        try:
            envbuild.build_env(env, log=lambda line: err.print(line, highlight=False, markup=False, soft_wrap=True),
                               force=force)
        except envbuild.EnvBuildError as exc:
            fail(f"building env '{env}' failed: {exc}", code=1)
        err.print(f"env '{env}': ready")


@app.command("lock")
def lock(env: Annotated[str, typer.Argument(help="Env name (envs/requirements/<env>.in).")]) -> None:
    """Re-compile an env's lock file from its .in file (maintainers)."""
    err.print(f"wrote {envbuild.lock_env(env, log=lambda line: err.print(line, markup=False))}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
