"""What a model's runner is given for one analysis: the run options from the CLI, turned into a
ModelJob per model (load spec, infer options with --prompt/--ask/--option applied, limits, log)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.images import ImageRef
from orchestrator.models.loadspec import build_load_spec
from orchestrator.models.registry import ModelSpec, is_loopback
from orchestrator.run.runner import PipelinedRunner
from schemas.protocol import LoadSpec


@dataclass(frozen=True)
class Limits:
    hello_s: float = 180.0  # first start imports torch + transformers: 4-20 s on 2 cores
    load_s: float = 900.0  # downloads and multi-GB weights
    infer_s: float = 60.0  # per image (--timeout)
    max_restarts: int = 3  # failures in a row (crash, timeout, failed start) before giving up
    retry_crashed: bool = True  # retry an image once after it crashed the runner


@dataclass
class ModelJob:
    spec: ModelSpec
    python: Path
    load_spec: LoadSpec
    infer_options: dict[str, Any]
    log_path: Path
    limits: Limits = field(default_factory=Limits)
    batch_size: int = 1
    offline: bool = False
    runner_module: str = "runners.host"  # tests swap in a fake runner
    adapter: str | None = None  # defaults to spec.adapter
    extra_env: dict[str, str] = field(default_factory=dict)
    # What an image sends besides id and name; default {"data": the file's bytes}. The judge
    # sends {"context": other models' outputs} instead.
    payload: Callable[[ImageRef], dict[str, Any]] | None = None
    # How a runner is started: RunnerProcess.start's signature and the same request/reply/kill/stop
    # interface back. Default: a subprocess here; orchestrator.cluster starts it on a node through a
    # host actor.
    start: Callable[..., PipelinedRunner] | None = None


@dataclass
class RunOptions:
    timeout_s: float | None = None  # per image; None = model.toml's timeout_s or 60 s
    device: str = "auto"
    dtype: str = "auto"
    offline: bool = False
    weights: dict[str, Path] = field(default_factory=dict)
    warmup: bool = False
    batch_size: int = 1
    parallel: int = 1
    threshold: float | None = None  # display threshold (raw scores are always kept)
    top: int = 10  # tags shown per model in the table
    infer_overrides: dict[str, Any] = field(default_factory=dict)
    retry_crashed: bool = True
    # captioners (and the judge): --prompt, --tags-prompt, --ask, --quantize
    prompt: str | None = None
    tags_prompt: str | None = None
    ask: str | None = None
    quantize: int | None = None
    exact_decode: bool = False  # --exact-decode: full-size decode, each model's reference preprocessing
    raw: str = "auto"  # --raw: how camera RAW files are decoded (runners/_images.py decode_raw)


def model_job(opts: RunOptions, spec: ModelSpec, python: Path, log_dir: Path, at_once: int = 1) -> ModelJob:
    """What one model's runner is given: its load spec, infer options, limits and log file; `at_once`: how
    many runners compute beside it (its share of the cores, `thread_share`)."""
    timeout = opts.timeout_s or spec.timeout_s or 60.0
    limits = Limits(infer_s=timeout, load_s=spec.load_timeout_s or Limits.load_s, retry_crashed=opts.retry_crashed)
    generative = spec.kind in ("captioner", "judge")
    # a captioner judging (run/judge.vision_judge) loads the captioner's --weights
    weights = opts.weights.get(spec.name, opts.weights.get(spec.folder.name))
    infer, load = split_overrides(spec, infer_overrides(opts, spec))
    if opts.quantize and generative:
        load["quantize"] = opts.quantize
    load_spec = build_load_spec(
        spec,
        weights=weights,
        offline=opts.offline,
        device=opts.device,
        dtype=opts.dtype,
        warmup=opts.warmup,
        overrides=load or None,
        exact_decode=opts.exact_decode,
    )
    # A served model's requests go `concurrency` at a time inside one infer call (runners/adapters/openai_compat.py):
    # its batches hold at least that many images, or the bound would never be reached.
    concurrency = load_spec["options"].get("concurrency")
    batch = max(opts.batch_size, concurrency) if isinstance(concurrency, int) and spec.server else opts.batch_size
    return ModelJob(
        spec=spec,
        python=python,
        load_spec=load_spec,
        infer_options={**spec.infer, **infer},
        log_path=log_dir / f"{spec.name}.log",
        limits=limits,
        batch_size=batch,
        offline=opts.offline,
        extra_env={**served_env(load_spec), **thread_share(at_once)},
    )


def split_overrides(spec: ModelSpec, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(infer options, load options) from --option overrides: a key of the model's [load] table is a load
    option (`--option openai-compatible.base_url=URL`, `--option qwen25vl.max_pixels=N`), every other key
    an infer option."""
    infer = {k: v for k, v in overrides.items() if k not in spec.load}
    return infer, {k: v for k, v in overrides.items() if k in spec.load}


def thread_share(at_once: int) -> dict[str, str]:
    """With `at_once` runners computing at the same time (--parallel N over several models), each one's
    share of this machine's cores (OMP_NUM_THREADS, read by torch and wd14's onnxruntime session): each
    would otherwise start a thread per core, and the runners would spend the cores waiting busily for each
    other (OpenMP spins). A user's own setting wins."""
    if at_once <= 1 or "OMP_NUM_THREADS" in os.environ:
        return {}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {"OMP_NUM_THREADS": str(max(1, cores // at_once))}


def served_env(load_spec: LoadSpec) -> dict[str, str]:
    """The one variable a served model's runner needs from this environment: the API key its load option
    `api_key_env` names (runners start with a filtered environment, orchestrator/run/processes.py). The
    key travels only there: never into options, the store, the outputs or a log."""
    name = load_spec["options"].get("api_key_env")
    if isinstance(name, str) and name and os.environ.get(name):
        return {name: os.environ[name]}
    return {}


def infer_overrides(opts: RunOptions, spec: ModelSpec) -> dict[str, Any]:
    """--prompt/--tags-prompt/--ask apply to captioners; --option KEY=V applies to every model,
    --option MODEL.KEY=V to that model only (and wins; split_overrides sends [load] keys to the load).

    `--ask tags|both` skips captioners without a tags prompt in model.toml (BLIP cannot answer
    one), so one flag can serve a mixed --models list; `--option blip.ask=tags` still errors."""
    out: dict[str, Any] = {}
    if spec.kind == "captioner":
        asks_tags = opts.ask in ("tags", "both")
        flags = {
            "prompt": opts.prompt,
            "tags_prompt": opts.tags_prompt,
            "ask": None if asks_tags and "tags_prompt" not in spec.infer else opts.ask,
        }
        out.update({k: v for k, v in flags.items() if v is not None})
    if opts.raw != "auto":  # the default stays out of the options: existing cells keep their key
        out["raw"] = opts.raw
    out.update({k: v for k, v in opts.infer_overrides.items() if "." not in k})
    # a captioner judging (`--judge openai-compatible`, named openai-compatible-judge) takes the captioner's
    # --option MODEL.KEY too, as it takes its --weights; its own name's win
    for name in dict.fromkeys((spec.folder.name, spec.name)):
        prefix = name + "."
        out.update({k[len(prefix) :]: v for k, v in opts.infer_overrides.items() if k.startswith(prefix)})
    return out


def photos_leave(opts: RunOptions, specs: list[ModelSpec]) -> dict[str, str]:
    """{model: host} for each served model whose endpoint (after --option) is not this machine."""
    from urllib.parse import urlsplit

    out = {}
    for spec in specs:
        if spec.endpoint is None:
            continue
        url = str(split_overrides(spec, infer_overrides(opts, spec))[1].get("base_url", spec.endpoint) or "")
        if url and not is_loopback(url):
            out[spec.name] = urlsplit(url).hostname or url
    return out
