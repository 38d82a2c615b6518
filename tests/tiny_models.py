"""Build (or reuse) the tiny random models of tests/tiny/, each inside its own model env.

Each `tests/tiny/<family>.py` declares `ENV = "<env>"` and is run as
`python -m tests.tiny.<family> OUT_DIR` with THAT env's python (so the model matches the
library versions that will load it). `build(family)` caches the result under
.cache/tiny/<family>-<hash of builder sources + env key>. Its `COVERS` names the registry
entries the build stands in for (tests/registry_coverage.py). This module runs in the
orchestrator's venv; the builders never import it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from filelock import FileLock

from orchestrator.models import envbuild
from orchestrator.paths import PROJECT_ROOT, cache_root
from tests.registry_coverage import TINY_DIR, builder_of, module_constant


def env_of(family: str) -> str:
    try:
        env: str = module_constant(TINY_DIR / f"{family}.py", "ENV")
    except KeyError:
        raise RuntimeError(f'tests/tiny/{family}.py must declare ENV = "<env name>"') from None
    return env


def imported_builders(builder: Path) -> list[Path]:
    """The sibling builders `builder` imports (`from tests.tiny import a, b` / `from tests.tiny.a import x`)."""
    names: set[str] = set()
    for line in builder.read_text().splitlines():
        if m := re.match(r"from tests\.tiny\.(\w+) import", line):
            names.add(m.group(1))
        elif m := re.match(r"from tests\.tiny import (.+)", line):
            names.update(n.strip() for n in m.group(1).split(","))
    return [p for n in sorted(names) if (p := builder.parent / f"{n}.py").is_file() and p != builder]


def build(family: str) -> Path:
    """Build (or reuse) the tiny model of `family`; the env is built first if needed."""
    env = env_of(family)
    python = envbuild.build_env(env, log=lambda s: None).python
    builder = PROJECT_ROOT / "tests" / "tiny" / f"{family}.py"
    # The builder, the other builders it imports (tests/tiny/clip_interrogator.py builds on blip.py),
    # the helpers the builders share (tests/tiny/_*.py), the interface stand-ins (tests/tiny/standins/)
    # and the env make the key.
    sources = [
        builder,
        *imported_builders(builder),
        *sorted(builder.parent.glob("_*.py")),
        *sorted(builder.parent.glob("standins/*.py")),
    ]
    env_key = envbuild.env_key(envbuild.env_paths(env)).encode()
    key = hashlib.sha256(b"".join(p.read_bytes() for p in sources) + env_key).hexdigest()[:12]
    out = cache_root() / "tiny" / f"{family}-{key}"
    if (out / ".complete").exists():
        return out
    # Test workers run in parallel (make test: pytest-xdist): one builds, the others wait and reuse it
    # (a second build would replace the folder under a worker reading it).
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock", timeout=1800):
        if (out / ".complete").exists():
            return out
        _build_into(out, family, python)
    return out


def _build_into(out: Path, family: str, python: Path) -> None:
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    proc = subprocess.run(
        [str(python), "-m", f"tests.tiny.{family}", str(tmp)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PROJECT_ROOT)},
    )
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError(f"building tiny {family} failed:\n{proc.stdout}\n{proc.stderr}")
    (tmp / ".complete").write_text("")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def tiny_weights(models: list[str]) -> dict[str, Path]:
    """`--weights` for each model that has a tiny build (a served model, e.g. llava, has none): the
    build of the builder whose COVERS names it, and the folder in it that COVERS gives."""
    from orchestrator.models.registry import load_registry

    registry = load_registry()
    out = {}
    for model in models:
        if registry[model].server:
            continue
        found = builder_of(model)
        if found is None:
            raise RuntimeError(f"{model}: no tests/tiny/*.py names it in COVERS")
        builder, folder = found
        out[model] = build(builder) / folder
    return out
