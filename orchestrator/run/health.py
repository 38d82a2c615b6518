"""Health of each model: env built and current, runner answers hello, weights present.

Each check returns a Check with `problem` (None when fine) and the command that fixes it.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import RunnerError
from orchestrator.models import envbuild
from orchestrator.models.registry import ModelSpec
from orchestrator.paths import logs_dir
from orchestrator.run.processes import RunnerProcess
from schemas.status import SUCCESS

SAMPLE_JUDGE_INPUT = {
    "outputs": [
        {
            "model": "sample-captioner",
            "kind": "captioner",
            "caption": "A dark corridor with peeling paint.",
            "tags": ["corridor"],
        },
        {"model": "sample-tagger", "kind": "tagger", "caption": None, "tags": ["indoors", "hallway", "peeling paint"]},
    ]
}


@dataclass
class Check:
    name: str
    problem: str | None = None
    fix: str = ""
    detail: str = ""


@dataclass
class ModelHealth:
    model: str
    checks: list[Check] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(c.problem is None for c in self.checks)


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


def weights_cached(spec: ModelSpec) -> bool:
    """The pinned revision's snapshot folder exists in the Hugging Face cache."""
    repo = hub_cache_dir() / ("models--" + spec.hub_id.replace("/", "--"))
    ref = repo / "refs" / spec.revision  # a pinned release tag (moondream2) resolves through refs/
    commit = ref.read_text().strip() if ref.is_file() else spec.revision
    return (repo / "snapshots" / commit).is_dir()


def check_env(spec: ModelSpec) -> Check:
    state, why = envbuild.env_state(spec.env)
    if state == "ready":
        return Check("env", detail=f"'{spec.env}' at {envbuild.env_paths(spec.env).venv}")
    return Check("env", f"env '{spec.env}' is {state}: {why}", fix=envbuild.setup_fix(spec.name))


def check_hello(spec: ModelSpec, timeout: float = 180.0) -> tuple[Check, dict[str, Any]]:
    python = envbuild.env_paths(spec.env).python
    runner = RunnerProcess.start(python, spec.adapter, logs_dir() / "health" / f"{spec.name}.log", offline=True)
    try:
        hello = runner.call("hello", timeout)
    except RunnerError as exc:
        return Check(
            "runner",
            f"runner did not answer hello: {exc}",
            fix=f"see {runner.log_path}; rebuild with `{envbuild.setup_fix(spec.name)}`",
        ), {}
    finally:
        runner.stop()
    return Check("runner", detail=describe_hello(spec.env, hello)), hello


def describe_hello(env: str, hello: dict[str, Any]) -> str:
    """The env and every library version its runner reported (envs pin different transformers)."""
    pkgs = hello.get("packages", {})
    versions = ", ".join(f"{name} {version}" for name, version in pkgs.items())
    return f"env {env}: python {hello.get('python')}; {versions}; devices: {', '.join(hello.get('devices') or ['cpu'])}"


def check_server(spec: ModelSpec, timeout: float = 120.0, overrides: dict[str, Any] | None = None) -> Check:
    """A served model: the runner's load asks the server whether it answers and has the model (Ollama), or
    whether the endpoint answers, takes the key and lists the model (OpenAI-compatible). `overrides`: the
    --option values (`MODEL.base_url=...`), as a run would apply them."""
    from orchestrator.models.loadspec import build_load_spec
    from orchestrator.run.jobs import RunOptions, infer_overrides, served_env, split_overrides

    load = split_overrides(spec, infer_overrides(RunOptions(infer_overrides=overrides or {}), spec))[1]
    load_spec = build_load_spec(spec, offline=True, overrides=load or None)
    python = envbuild.env_paths(spec.env).python
    runner = RunnerProcess.start(
        python, spec.adapter, logs_dir() / "health" / f"{spec.name}.log", offline=True, extra_env=served_env(load_spec)
    )
    try:
        runner.call("hello", timeout)
        info = runner.call("load", timeout, spec=load_spec)
    except RunnerError as exc:
        message = str(getattr(exc, "message", "") or exc).strip().splitlines()[0]
        command = re.search(r"`([^`]+)`", message)  # the adapter names the fix: `ollama pull llava`, ...
        return Check("server", message, fix=command.group(1) if command else f"see {runner.log_path}")
    finally:
        runner.stop()
    checked = ""
    if spec.endpoint is not None:  # runners/adapters/openai_compat.py's load note says whether a key was sent
        keyless = any("API key: none sent" in note for note in info.get("notes", []))
        checked = f" (reachable, {'no key sent, none asked for' if keyless else 'key accepted'}, model listed)"
    return Check("server", detail=f"{info.get('model_version')} on {info.get('device')}{checked}")


def check_weights(spec: ModelSpec, local: Path | None, overrides: dict[str, Any] | None = None) -> Check:
    if spec.server:
        return check_server(spec, overrides=overrides)
    if local is not None:
        if local.exists():
            return Check("weights", detail=f"local override {local}")
        return Check(
            "weights", f"local weights path {local} does not exist", fix=f"--weights {spec.name}=<existing path>"
        )
    if weights_cached(spec):
        return Check("weights", detail=f"{spec.hub_id}@{spec.revision[:12]} in {hub_cache_dir()}")
    if spec.gated and not hub_token():
        return Check(
            "weights",
            f"{spec.hub_id} is gated: it needs an accepted licence and a Hugging Face token, and no token is set",
            fix=f"accept the terms at https://huggingface.co/{spec.hub_id}, then `hf auth login` or "
            f"export HF_TOKEN=...; or --weights {spec.name}=PATH",
        )
    return Check(
        "weights",
        f"{spec.hub_id}@{spec.revision[:12]} is not in the Hugging Face cache",
        fix=f"mltag run {spec.name} <image> (downloads it; needs network), or --weights {spec.name}=PATH",
    )


def check_deep(spec: ModelSpec, local: Path | None, device: str, overrides: dict[str, Any] | None = None) -> Check:
    """One real inference on a generated image, through the real supervisor."""
    from PIL import Image

    from orchestrator.images import hash_file
    from orchestrator.run.jobs import RunOptions
    from orchestrator.run.pipeline import Analysis

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "health.png"
        Image.radial_gradient("L").convert("RGB").resize((320, 240)).save(path)
        weights = {spec.name: local} if local else {}
        options = RunOptions(
            weights=weights, device=device, timeout_s=spec.timeout_s or 300, infer_overrides=overrides or {}
        )
        ref = hash_file(path)
        if spec.kind == "judge":  # a judge reads other models' outputs: give it a known one
            analysis = Analysis([ref], [], options, judge=spec)
            analysis.run_judge(contexts={ref.id: SAMPLE_JUDGE_INPUT})
            doc = analysis.results().document()
        else:
            analysis = Analysis([ref], [spec], options)
            doc = analysis.run().document()
        analysis.close()
    result = doc["images"][0]["results"][spec.name]
    if result["status"] in SUCCESS:
        return Check("deep", detail=f"inference {result['status']} in {result.get('inference_s', 0):.2f} s")
    return Check(
        "deep",
        f"inference on a generated image: {result['status']}: {result.get('message', '')}",
        fix=result.get("fix", ""),
    )


def model_health(
    spec: ModelSpec,
    local: Path | None = None,
    deep: bool = False,
    device: str = "auto",
    overrides: dict[str, Any] | None = None,
) -> ModelHealth:
    report = ModelHealth(spec.name, [check_env(spec)])
    if report.checks[0].problem is None:
        report.checks.append(check_hello(spec)[0])
    report.checks.append(check_weights(spec, local, overrides))
    if deep and report.healthy:  # a deep check needs the env, the runner and the weights
        report.checks.append(check_deep(spec, local, device, overrides))
    return report
