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
from orchestrator.images import ImageDiscoveryError, discover, hash_file
from orchestrator.registry import ModelSpec, RegistryError, load_registry, select

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Run many image tagging / captioning models on the same photos and compare them.")
err = Console(stderr=True)
FORMATS = ("table", "json", "csv")

# -- shared options (analyze and run take the same flags) --------------------------------------------
Paths = Annotated[list[Path], typer.Argument(help="Image files or folders.", show_default=False)]
Format = Annotated[str, typer.Option("--format", "-f", help="table | json | csv")]
Out = Annotated[Path | None, typer.Option("--out", "-o", help="Write the output to this file instead of stdout.")]
Timeout = Annotated[float | None, typer.Option("--timeout", help="Seconds per image before the runner is killed "
                                                                 "(default: the model's timeout_s, else 60).")]
Threshold = Annotated[float | None, typer.Option("--threshold", help="Display threshold; raw scores stay in JSON.")]
Top = Annotated[int, typer.Option("--top", help="Tags shown per model in the table (0 = all).")]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | mps")]
Dtype = Annotated[str, typer.Option("--dtype", help="auto | float32 | bfloat16 | float16 (auto: bf16/fp16 on GPU, "
                                                    "fp32 on CPU)")]
Offline = Annotated[bool, typer.Option("--offline", help="Never touch the network (HF cache / --weights only).")]
Weights = Annotated[list[str] | None, typer.Option("--weights", help="MODEL=PATH local weights override (repeatable).")]
Recursive = Annotated[bool, typer.Option("--recursive/--no-recursive", help="Search folders recursively.")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show the runners' stderr live.")]
Warmup = Annotated[bool, typer.Option("--warmup", help="Time one warm-up inference after loading.")]
Batch = Annotated[int, typer.Option("--batch-size", help="Images per infer request.")]
Parallel = Annotated[int, typer.Option("--parallel", help="Models run at once.")]
Option = Annotated[list[str] | None, typer.Option("--option", help="KEY=VALUE adapter option for every model, or "
                                                                   "MODEL.KEY=VALUE for one (VALUE parsed as JSON "
                                                                   "when it can be).")]
Retry = Annotated[bool, typer.Option("--retry-crashed/--no-retry-crashed",
                                     help="Retry an image once after it crashed the runner.")]


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


def _select(names: str) -> list[ModelSpec]:
    try:
        return select(_registry(), names)
    except RegistryError as exc:
        fail(str(exc))


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
             options: Any, live_logs: bool) -> None:
    from orchestrator.pipeline import Analysis, exit_code
    from orchestrator.report.flat import to_csv, to_json
    from orchestrator.report.table import render

    if fmt not in FORMATS:
        fail(f"unknown --format {fmt!r} (choose from {', '.join(FORMATS)})")
    selected = {m.name for m in models}
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
    images = [hash_file(p) for p in files]
    analysis = Analysis(images, models, options)
    err.print(f"mltag: {len(images)} image(s) x {len(models)} model(s): {', '.join(m.name for m in models)}",
              highlight=False)
    follower = _LogFollower(analysis) if live_logs else None
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        tasks = {m.name: bar.add_task(m.name, total=len(images)) for m in models}

        def progress(model: str, done: int, total: int) -> None:
            bar.update(tasks[model], completed=done)
            if not err.is_terminal:
                err.print(f"  {model}: {done}/{total}", highlight=False)

        try:
            document = analysis.run(progress)
        except KeyboardInterrupt:
            from orchestrator.supervisor import kill_all_runners

            kill_all_runners()
            err.print("interrupted: all runners stopped")
            raise typer.Exit(130) from None
        finally:
            if follower:
                follower.stop()
    for m in document["models"]:
        if m["status"] != "ok":
            fix = f"\n  fix: {m['fix']}" if m["fix"] else ""
            err.print(f"[yellow]{m['name']}: {m['status']}: {m['message']}[/]{fix}", highlight=False)
    if fmt == "table":
        console = Console(file=open(out, "w"), width=160) if out else _stdout()
        render(document, console)
    else:
        text = to_json(document) if fmt == "json" else to_csv(document, options.threshold)
        if out:
            out.write_text(text)
        else:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if out:
        err.print(f"wrote {out}")
    raise typer.Exit(exit_code(document))


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
             retry: bool) -> Any:
    from orchestrator.pipeline import RunOptions

    if batch_size < 1 or parallel < 1:
        fail("--batch-size and --parallel must be at least 1")
    if device not in ("auto", "cpu", "cuda", "mps"):
        fail(f"unknown --device {device!r} (auto, cpu, cuda, mps)")
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        fail(f"unknown --dtype {dtype!r} (auto, float32, bfloat16, float16)")
    return RunOptions(timeout_s=timeout, threshold=threshold, top=top, device=device, dtype=dtype, offline=offline,
                      weights={k: Path(v).expanduser() for k, v in _pairs(weights, "--weights").items()},
                      warmup=warmup, batch_size=batch_size, parallel=parallel, retry_crashed=retry,
                      infer_overrides={k: _parse_value(v) for k, v in _pairs(option, "--option").items()})


@app.command()
def analyze(paths: Paths,
            models: Annotated[str, typer.Option("--models", "-m", help="all, or comma-separated names")] = "all",
            fmt: Format = "table", out: Out = None, timeout: Timeout = None, threshold: Threshold = None,
            top: Top = 10, device: Device = "auto", dtype: Dtype = "auto", offline: Offline = False,
            weights: Weights = None, recursive: Recursive = True, verbose: Verbose = False, warmup: Warmup = False,
            batch_size: Batch = 1,
            parallel: Parallel = 1, option: Option = None, retry: Retry = True) -> None:
    """Run the selected models on every image and show their raw outputs side by side."""
    opts = _options(timeout, threshold, top, device, dtype, offline, weights, warmup, batch_size, parallel, option,
                    retry)
    _analyze(paths, _select(models), fmt, out, recursive, opts, live_logs=verbose)


@app.command()
def run(model: Annotated[str, typer.Argument(help="One model name (see `mltag models`).")], paths: Paths,
        fmt: Format = "table", out: Out = None, timeout: Timeout = None, threshold: Threshold = None,
        top: Top = 10, device: Device = "auto", dtype: Dtype = "auto", offline: Offline = False,
        weights: Weights = None, recursive: Recursive = True, warmup: Warmup = False, batch_size: Batch = 1,
        option: Option = None,
        retry: Retry = True) -> None:
    """Run ONE model alone, its runner's stderr shown live."""
    opts = _options(timeout, threshold, top, device, dtype, offline, weights, warmup, batch_size, 1, option, retry)
    _analyze(paths, _select(model), fmt, out, recursive, opts, live_logs=True)


@app.command()
def models() -> None:
    """The registry: name, kind, env, hub id@revision, env built?, weights cached?"""
    from orchestrator.health import weights_cached

    table = Table(title="mltag models")
    for col in ("name", "kind", "env", "hub id @ revision", "env built", "weights", "size"):
        table.add_column(col, no_wrap=col != "size")
    for spec in _registry().values():
        state, _ = envbuild.env_state(spec.env)
        table.add_row(spec.name, spec.kind, spec.env, f"{spec.hub_id}@{spec.revision[:12]}",
                      "[green]built[/]" if state == "ready" else f"[yellow]{state}[/]",
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
