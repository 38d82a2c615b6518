"""`mltag paths`: mltag's version, where it runs from, and every folder it reads or writes."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import Annotated

import typer
from rich.table import Table

from orchestrator import paths as p
from orchestrator.cli.console import stdout

AsJson = Annotated[bool, typer.Option("--json", help="One JSON document on stdout (for scripts).")]


@dataclass(frozen=True)
class Location:
    name: str
    path: str
    set_by: str  # the variable that placed it, or the default that did
    what: str


def _from_var(var: str, default: str) -> str:
    return var if os.environ.get(var) else default


def locations() -> list[Location]:
    from orchestrator.store.location import default_store_path

    layout = "checkout" if p.from_checkout() else "install"
    user_cache = _from_var("MLTAG_CACHE", "default (the user cache folder)")
    if os.environ.get("MLTAG_CACHE_DIR"):
        cache = "MLTAG_CACHE_DIR"
    else:  # a checkout keeps its envs in its .cache/; an install, in the user cache folder
        cache = "default (the checkout's .cache)" if layout == "checkout" else user_cache
    return [
        Location("registry", str(p.ENVS_DIR), layout, "each model's model.toml (read only)"),
        Location("locks", str(p.REQUIREMENTS_DIR), layout, "the envs' .in files and locks (read only)"),
        Location("envs", str(p.venvs_dir()), cache, "one venv per env (`mltag setup-envs`)"),
        Location("runner code", str(p.runner_code_dir()), layout, "what the envs' mltag.pth names"),
        Location("uv cache", str(p.uv_cache_dir()), _from_var("UV_CACHE_DIR", cache), "uv's downloads and wheels"),
        Location("logs", str(p.logs_dir()), cache, "one log per run and model"),
        Location("adapter caches", str(p.adapter_cache_dir()), cache, "derived data (text embeddings)"),
        Location(
            "results store",
            str(default_store_path()),
            _from_var("MLTAG_HOME", "default (the user data folder)"),
            "every analysed photo's results (--store overrides)",
        ),
        Location("thumbnails", str(p.thumbnails_dir()), user_cache, "the HTML report's and `mltag serve`'s"),
        Location("browse indexes", str(p.browse_dir()), user_cache, "`mltag serve`'s"),
    ]


def paths_command(as_json: AsJson = False) -> None:
    """mltag's version, whether it runs from a checkout or an install, and where everything lives (envs,
    uv's cache, logs, results store, thumbnails, the registry) with the variable that placed each."""
    found = locations()
    layout = "checkout" if p.from_checkout() else "install"
    if as_json:
        doc = {
            "version": p.version(),
            "layout": layout,
            "root": str(p.PROJECT_ROOT),
            "python": sys.executable,
            "paths": {loc.name: asdict(loc) for loc in found},
        }
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    console = stdout()
    console.print(f"mltag {p.version()}, from the {layout} at {p.PROJECT_ROOT}", highlight=False, soft_wrap=True)
    console.print(f"python {sys.executable}", highlight=False, soft_wrap=True)
    table = Table(box=None, show_header=True, pad_edge=False)
    for col in ("", "path", "set by", "what"):
        table.add_column(col, no_wrap=col in ("", "path"), overflow="fold")
    for loc in found:
        table.add_row(loc.name, loc.path, loc.set_by, loc.what)
    console.print(table)
