"""The models reference, generated from the registry (envs/*/model.toml, orchestrator/models/registry.py) and
the tiny builders' COVERS (tests/tiny/*.py, read without importing them: they need torch). Used by
docs/scripts/gen_pages.py at build time and by tests/docs/test_models_page.py."""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.models.registry import ModelSpec
from tests.registry_coverage import tiny_covers

MARKER = "<!-- generated: models -->"
SERVERS = {"ollama": "Ollama", "openai": "OpenAI-compatible endpoint"}


def covers(tiny_dir: Path) -> dict[str, str]:
    """registry model -> the tests/tiny builder whose COVERS names it (the first, in name order)."""
    out: dict[str, str] = {}
    for builder, covered in tiny_covers(tiny_dir).items():
        for model in covered:
            out.setdefault(model, builder)
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _source(spec: ModelSpec) -> str:
    if spec.server:
        return f"{SERVERS.get(spec.server, spec.server)}: `{spec.hub_id}`"
    revision = spec.revision[:12] if re.fullmatch(r"[0-9a-f]{40}", spec.revision) else spec.revision
    return f"[{spec.hub_id}](https://huggingface.co/{spec.hub_id}) @ `{revision}`"


def _tested_on(spec: ModelSpec, builders: dict[str, str]) -> str:
    if spec.server:
        return "a stand-in server (tests/)"
    builder = builders.get(spec.name)
    return f"tiny random model (`tests/tiny/{builder}.py`)" if builder else "**none**"


def models_table(registry: dict[str, ModelSpec], builders: dict[str, str]) -> str:
    """One row per registry entry, then one section per entry with its description and defaults."""
    lines = [
        "| model | kind | env | weights | memory | remote code | upstream code run | tested on |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for spec in registry.values():
        gated = " (gated)" if spec.gated else ""
        lines.append(
            "| "
            + " | ".join(
                [
                    f"[`{spec.name}`](#{spec.name})",
                    spec.kind,
                    f"`{spec.env}`",
                    _source(spec) + gated,
                    f"{spec.memory_mb:,} MB" if spec.memory_mb else "",
                    "yes" if spec.remote_code else "",
                    _cell(spec.upstream_code),
                    _tested_on(spec, builders),
                ]
            )
            + " |"
        )
    for spec in registry.values():
        lines += ["", f"### {spec.name}", "", _cell(spec.description)]
        facts = [f"adapter `{spec.adapter}`", f"env `{spec.env}`"]
        if spec.licence:
            facts.append(f"licence: {spec.licence}")
        if spec.size:
            facts.append(f"size: {spec.size}")
        if spec.timeout_s:
            facts.append(f"timeout {spec.timeout_s:g} s per image")
        if spec.load_timeout_s:
            facts.append(f"load timeout {spec.load_timeout_s:g} s")
        lines += ["", "; ".join(_cell(f) for f in facts) + "."]
        for table, options in (("load", spec.load), ("infer", spec.infer)):
            if options:
                shown = ", ".join(f"`{k} = {_short(v)}`" for k, v in options.items())
                lines += ["", f"Default `[{table}]` options: {shown}."]
    return "\n".join(lines) + "\n"


def _short(value: object) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return _cell(text if len(text) <= 60 else text[:57] + '..."')


def render(page: str, registry: dict[str, ModelSpec], builders: dict[str, str]) -> str:
    """The models page with its marker replaced by the generated table and sections."""
    if MARKER not in page:
        raise ValueError(f"docs/reference/models.md has no {MARKER} line")
    return page.replace(MARKER, models_table(registry, builders))
