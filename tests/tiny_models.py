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
import tempfile
from contextlib import ExitStack
from pathlib import Path

from filelock import FileLock, Timeout

from orchestrator.models import envbuild
from orchestrator.paths import PROJECT_ROOT, cache_root
from tests.registry_coverage import TINY_DIR, builder_of, builders, module_constant
from tests.tiny import BATCH_PREFIX


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


def _out_dir(family: str, env: str) -> Path:
    """Where `family`'s build is cached: keyed by the builder, the other builders it imports
    (tests/tiny/clip_interrogator.py builds on blip.py), the helpers the builders share
    (tests/tiny/_*.py, the batch runner __main__.py), the interface stand-ins (tests/tiny/standins/) and the env."""
    builder = TINY_DIR / f"{family}.py"
    sources = [
        builder,
        *imported_builders(builder),
        *sorted(builder.parent.glob("_*.py")),
        *sorted(builder.parent.glob("standins/*.py")),
    ]
    env_key = envbuild.env_key(envbuild.env_paths(env)).encode()
    key = hashlib.sha256(b"".join(p.read_bytes() for p in sources) + env_key).hexdigest()[:12]
    return cache_root() / "tiny" / f"{family}-{key}"


def _alone(family: str) -> bool:
    """A builder that sets environment variables before transformers is imported builds in a process of its own."""
    try:
        return bool(module_constant(TINY_DIR / f"{family}.py", "ALONE"))
    except KeyError:
        return False


# tests/conftest.py turns this on: a test session needs every tiny model sooner or later, `make demo` only its own.
BUILD_SIBLINGS = False


def build(family: str) -> Path:
    """Build (or reuse) the tiny model of `family`; the env is built first if needed. With `BUILD_SIBLINGS`,
    the other missing builds of the same env are made in the same process (`python -m tests.tiny`), which
    imports torch and transformers once for all of them; each is usable as soon as it is done."""
    env = env_of(family)
    python = envbuild.build_env(env, log=lambda s: None).python
    out = _out_dir(family, env)
    if (out / ".complete").exists():
        return out
    # Test workers run in parallel (make test: pytest-xdist): one builds, the others wait and reuse it
    # (a second build would replace the folder under a worker reading it).
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(out) + ".lock", timeout=1800)
    with lock, ExitStack() as held:  # _build_batch releases each lock early; a second release does nothing
        if (out / ".complete").exists():
            return out
        batch = {family: (out, lock)}
        if BUILD_SIBLINGS and not _alone(family):
            batch.update(_claim_siblings(family, env, held))
        _build_batch(batch, python)
    return out


def _claim_siblings(family: str, env: str, held: ExitStack) -> dict[str, tuple[Path, FileLock]]:
    """The other builds of `env` not made yet and not being made by another process, their locks taken
    (released by `held` at the latest)."""
    claimed: dict[str, tuple[Path, FileLock]] = {}
    for path in builders():
        other = path.stem
        if other == family or _alone(other) or env_of(other) != env:
            continue
        out = _out_dir(other, env)
        if (out / ".complete").exists():
            continue
        lock = FileLock(str(out) + ".lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue  # another worker builds it
        held.callback(lock.release)
        if not (out / ".complete").exists():
            claimed[other] = (out, lock)
    return claimed


def _build_batch(batch: dict[str, tuple[Path, FileLock]], python: Path) -> None:
    """`python -m tests.tiny FAMILY=TMP ...`: each build moved into place, and its lock released for the
    workers waiting on it, as its `built` line comes. The first is the one asked for: it must succeed;
    a sibling that failed is left to be built (and reported) again when a test asks for it."""
    tmps = {family: out.with_name(out.name + f".tmp{os.getpid()}") for family, (out, _) in batch.items()}
    for tmp in tmps.values():
        shutil.rmtree(tmp, ignore_errors=True)
    built = f"{BATCH_PREFIX}built "
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(
            [str(python), "-m", "tests.tiny", *(f"{family}={tmp}" for family, tmp in tmps.items())],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(PROJECT_ROOT)},
        )
        assert proc.stdout is not None
        said: list[str] = []
        for line in proc.stdout:
            said.append(line)
            if line.startswith(built) and (family := line.removeprefix(built).strip()) in tmps:
                out, lock = batch[family]
                tmp = tmps.pop(family)
                (tmp / ".complete").write_text("")
                shutil.rmtree(out, ignore_errors=True)
                tmp.rename(out)
                lock.release()
        proc.wait()
        for tmp in tmps.values():
            shutil.rmtree(tmp, ignore_errors=True)
        asked = next(iter(batch))
        if asked in tmps:
            errors.seek(0)
            raise RuntimeError(f"building tiny {asked} failed:\n{''.join(said)}\n{errors.read()}")


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
