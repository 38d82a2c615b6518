"""The model registry: one envs/<model>/model.toml per model, read as data (nothing imported).

model.toml fields:
    adapter      dotted module run by `python -m runners.host <adapter>` (e.g. "runners.adapters.wd14")
    kind         "tagger" | "zero-shot" | "captioner" | "judge" (a text LLM merging the others' outputs)
    env          name of the venv (envs/requirements/<env>.in + .txt); models may share one
    hub_id       Hugging Face repo id
    revision     pinned commit of that repo
    memory_mb    rough peak memory estimate, for scheduling and `mltag models`
    timeout_s    optional per-image deadline (overrides --timeout's default)
    load_timeout_s  optional deadline for loading the weights
    licence, size, description   shown to the user
    gated        true when the Hub repo needs an accepted licence and a token (HF_TOKEN / `hf auth login`)
    remote_code  true when loading runs Python files from the model repository (trust_remote_code);
                 only allowed with a pinned revision (a commit, or a release tag), never a branch
    upstream_code  "yes" when the tests run the model's real upstream code, else why not (docs/reference/models.md)
    server       "ollama" when a running Ollama holds the model (hub_id is then the server's model name);
                 "openai" for an OpenAI-compatible endpoint (runners/adapters/openai_compat.py; [load] base_url is
                 the endpoint, hub_id the served model's name)
    [load]       options passed to the adapter's load()
    [infer]      default options for infer() (thresholds, prompts, ...)
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from orchestrator.errors import RegistryError, UnknownModel
from orchestrator.paths import ENVS_DIR

KINDS = ("tagger", "zero-shot", "captioner", "judge")
LOOPBACK = ("localhost", "127.0.0.1", "::1")
# Branch names move: remote code loaded from one would run whatever the repo holds today.
UNPINNED = ("main", "master", "head", "latest", "dev")
REQUIRED = ("adapter", "kind", "env", "hub_id", "revision")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    adapter: str
    kind: str
    env: str
    hub_id: str
    revision: str
    folder: Path
    memory_mb: int = 0
    timeout_s: float | None = None
    load_timeout_s: float | None = None
    licence: str = ""
    size: str = ""
    description: str = ""
    gated: bool = False
    remote_code: bool = False
    upstream_code: str = "yes"
    server: str = ""
    load: dict[str, Any] = field(default_factory=dict)
    infer: dict[str, Any] = field(default_factory=dict)

    @property
    def endpoint(self) -> str | None:
        """An OpenAI-compatible model's base URL as model.toml gives it ("" when the user must give it), else None."""
        return str(self.load.get("base_url") or "") if self.server == "openai" else None

    @property
    def opt_in(self) -> bool:
        """True for a model `--models all` leaves out: its photos would leave this machine (a hosted API), or
        its endpoint is only known once named (`--option MODEL.base_url=...`)."""
        return self.endpoint is not None and not is_loopback(self.endpoint)


def is_loopback(url: str) -> bool:
    """True when `url` names this machine: photos sent there do not leave it."""
    return (urlsplit(url).hostname or "").lower() in LOOPBACK


def _parse(path: Path) -> ModelSpec:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError(f"{path}: invalid TOML: {exc}") from exc
    missing = [k for k in REQUIRED if not data.get(k)]
    if missing:
        raise RegistryError(f"{path}: missing {', '.join(missing)}")
    if data["kind"] not in KINDS:
        raise RegistryError(f"{path}: kind {data['kind']!r} is not one of {', '.join(KINDS)}")
    if not data["adapter"].startswith("runners.adapters."):
        raise RegistryError(
            f"{path}: adapter must be a module under runners/adapters/ (e.g. runners.adapters.wd14), "
            f"got {data['adapter']!r}"
        )
    if data.get("remote_code") and str(data["revision"]).lower() in UNPINNED:
        raise RegistryError(
            f"{path}: remote_code = true needs a pinned revision (a commit or a release tag), "
            f"not the branch {data['revision']!r}"
        )
    known = {f for f in ModelSpec.__dataclass_fields__ if f not in ("name", "folder")}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RegistryError(f"{path}: unknown field(s) {', '.join(unknown)}")
    return ModelSpec(name=path.parent.name, folder=path.parent, **data)


def load_registry(envs_dir: Path = ENVS_DIR) -> dict[str, ModelSpec]:
    """Every envs_dir/<model>/model.toml. None at all is an error, never an empty registry: an install
    whose wheel lacks its envs/ (package data, pyproject.toml) would otherwise list no model, silently."""
    specs = {}
    for path in sorted(envs_dir.glob("*/model.toml")):
        spec = _parse(path)
        specs[spec.name] = spec
    if not specs:
        raise RegistryError(
            f"no model registry: {envs_dir} holds no <model>/model.toml",
            fix="reinstall mltag (`mltag paths` shows where it runs from); its envs/ folder is part of the package",
        )
    return specs


def select(registry: dict[str, ModelSpec], names: str | list[str]) -> list[ModelSpec]:
    """Resolve "all" or comma-separated names, with a "did you mean" for typos."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if names == ["all"]:  # every image model; a judge runs only when asked for (--judge), a hosted one when named
        return [spec for spec in registry.values() if spec.kind != "judge" and not spec.opt_in]
    out = []
    for name in names:
        if name not in registry:
            close = difflib.get_close_matches(name, list(registry), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise UnknownModel(f"unknown model '{name}'{hint} (known: {', '.join(registry)})")
        if registry[name] not in out:
            out.append(registry[name])
    return out
