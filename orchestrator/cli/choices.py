"""The user's choices, checked and turned into what the engine takes: models from the registry, run
flags into `RunOptions`, view flags into `Views`. A bad choice is a UsageError before any model runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.errors import UsageError
from orchestrator.models.registry import ModelSpec, load_registry, select

if TYPE_CHECKING:
    from orchestrator.report.comparison_views import Views
    from orchestrator.run.jobs import RunOptions

FORMATS = ("table", "json", "jsonl", "csv", "html")


def registry() -> dict[str, ModelSpec]:
    return load_registry()


def models(names: str, judges: bool = True) -> list[ModelSpec]:
    """`--models a,b` (or `all`) as registry entries; judges only where they may be chosen."""
    specs = select(registry(), names)
    if not judges:
        for spec in specs:
            if spec.kind == "judge":
                raise UsageError(
                    f"'{spec.name}' is a judge: it merges the other models' outputs; use --judge {spec.name}"
                )
    return specs


def judge(name: str | None) -> ModelSpec | None:
    """--judge NAME: a text judge (kind judge), or any captioner, which then judges seeing the photo."""
    from orchestrator.run.judge import vision_judge

    if name is None:
        return None
    [spec] = models(name)
    if spec.kind == "captioner":
        return vision_judge(spec)
    if spec.kind != "judge":
        judges = ", ".join(s.name for s in registry().values() if s.kind in ("judge", "captioner"))
        raise UsageError(
            f"--judge {name}: '{name}' is a {spec.kind}, not a judge: a text judge or any captioner "
            f"(which then sees the photo) can judge ({judges})"
        )
    return spec


def pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    """Repeated KEY=VALUE flags as a dict."""
    out = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise UsageError(f"{flag} expects KEY=VALUE, got {value!r}")
        out[key.strip()] = rest.strip()
    return out


def option_overrides(values: list[str] | None) -> dict[str, Any]:
    """Repeated --option KEY=VALUE / MODEL.KEY=VALUE, values parsed as JSON when they can be. A secret is
    refused: options are written into the outputs and the store, so a key is named, never given."""
    out = {k: _parse_value(v) for k, v in pairs(values, "--option").items()}
    for key in out:
        name = key.rsplit(".", 1)[-1].lower()
        if name in SECRET_OPTIONS:
            model = key.rsplit(".", 1)[0] + "." if "." in key else ""
            raise UsageError(
                f"--option {key}: an API key is never given as an option (options are written into "
                f"the outputs and the results store); export it and name the variable: "
                f"export MY_KEY=...; --option {model}api_key_env=MY_KEY"
            )
    return out


SECRET_OPTIONS = ("api_key", "key", "token", "password", "secret", "authorization")


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def check_threshold(value: float | None, flag: str = "--threshold") -> None:
    """A score cut: every score mltag compares is a probability or an estimate within [0, 1]."""
    if value is not None and not 0.0 <= value <= 1.0:  # NaN fails too
        raise UsageError(
            f"{flag} must be within 0 and 1 (scores are probabilities), got {value:g}",
            fix=f"e.g. {flag} 0.35; leave it out to keep every tag",
        )


def check_weights(weights: dict[str, Path], specs: list[ModelSpec]) -> None:
    """--weights MODEL=PATH resolved as the runner will get it (a cache root to its pinned snapshot,
    orchestrator/models/loadspec.py): a cache without that revision stops here, before any model runs."""
    from orchestrator.models.loadspec import resolve_weights

    for spec in specs:
        path = weights.get(spec.name, weights.get(spec.folder.name))
        if path is not None:
            if not path.exists():
                raise UsageError(f"--weights {spec.name}={path}: path does not exist")
            resolve_weights(spec, path)


def check_format(fmt: str, out: Path | None) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {fmt!r} (choose from {', '.join(FORMATS)})")
    if fmt == "html" and out is None:
        raise UsageError("--format html writes one self-contained file: add --out FILE (e.g. --out report.html)")


@dataclass(kw_only=True)
class RunFlags:
    """How models run (analyze, run, judge), as given on the command line."""

    timeout: float | None = None
    threshold: float | None = None
    top: int = 10
    device: str = "auto"
    dtype: str = "auto"
    offline: bool = False
    weights: list[str] | None = None
    warmup: bool = False
    batch_size: int = 1
    parallel: int = 1
    option: list[str] | None = None
    retry: bool = True
    prompt: str | None = None
    tags_prompt: str | None = None
    ask: str | None = None
    quantize: int | None = None
    exact_decode: bool = False
    raw: str = "auto"

    def run_options(self) -> RunOptions:
        from orchestrator.run.jobs import RunOptions

        if self.ask is not None and self.ask not in ("caption", "tags", "both"):
            raise UsageError(f"unknown --ask {self.ask!r} (caption, tags, both)")
        if self.quantize is not None and self.quantize not in (4, 8):
            raise UsageError(f"--quantize takes 4 or 8, got {self.quantize}")
        for flag, text in (("--prompt", self.prompt), ("--tags-prompt", self.tags_prompt)):
            if text is not None and not text.strip():
                raise UsageError(f"{flag} must not be empty")
        check_threshold(self.threshold)
        if self.timeout is not None and not self.timeout > 0:  # NaN too
            raise UsageError(
                f"--timeout must be more than 0 seconds, got {self.timeout:g}",
                fix="leave it out for the model's own timeout_s (else 60), or give e.g. --timeout 300",
            )
        if self.batch_size < 1 or self.parallel < 1:
            raise UsageError("--batch-size and --parallel must be at least 1")
        if self.raw not in ("auto", "preview", "develop"):
            raise UsageError(f"unknown --raw {self.raw!r} (auto, preview, develop)")
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise UsageError(f"unknown --device {self.device!r} (auto, cpu, cuda, mps)")
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise UsageError(f"unknown --dtype {self.dtype!r} (auto, float32, bfloat16, float16)")
        return RunOptions(
            timeout_s=self.timeout,
            threshold=self.threshold,
            top=self.top,
            device=self.device,
            dtype=self.dtype,
            offline=self.offline,
            weights={k: Path(v).expanduser() for k, v in pairs(self.weights, "--weights").items()},
            warmup=self.warmup,
            batch_size=self.batch_size,
            parallel=self.parallel,
            retry_crashed=self.retry,
            prompt=self.prompt,
            tags_prompt=self.tags_prompt,
            ask=self.ask,
            quantize=self.quantize,
            exact_decode=self.exact_decode,
            raw=self.raw,
            infer_overrides=option_overrides(self.option),
        )


@dataclass(kw_only=True)
class ViewFlags:
    """What the outputs show and how the comparison compares, as given on the command line."""

    top: int = 10
    threshold: float | None = None
    show_matrix: bool = False
    show_timing: bool = False
    show_confidence: list[str] | None = None
    synonyms: Path | None = None
    compare_top: int = 10
    consensus_min: int | None = None

    def views(self) -> Views:
        """The comparison's settings and the table's views; a bad synonym file stops here, before any model
        runs."""
        from orchestrator.compare import Normaliser, load_synonyms
        from orchestrator.report.comparison_views import Views

        if self.top < 0:
            raise UsageError("--top must be 0 (all) or more")
        check_threshold(self.threshold)
        if self.compare_top < 0:
            raise UsageError("--compare-top must be 0 (all) or more")
        if self.consensus_min is not None and self.consensus_min < 1:
            raise UsageError("--consensus-min must be 1 or more")
        normaliser = Normaliser(load_synonyms(self.synonyms) if self.synonyms else None)
        return Views(
            top=self.top,
            threshold=self.threshold,
            matrix=self.show_matrix,
            timing=self.show_timing,
            confidence=list(self.show_confidence or []),
            normaliser=normaliser,
            compare_top=self.compare_top,
            consensus_min=self.consensus_min,
        )
