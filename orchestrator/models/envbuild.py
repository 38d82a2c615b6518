"""Build one venv per env with uv: fast, deduplicated, locked, and never half-built.

Recipe (measured in shared/research/feasibility.md):
- uv with its cache on the venvs' filesystem (hardlinks: ~2 s and ~10 MB per env when warm);
- torch==2.13.0 always pinned on the same command, and pip's find-links handed to uv (uv does
  not read pip's config), so the local CPU wheel is used where there is one;
- torchvision from PyPI is CUDA-only: a .pth activates runners/_tv_cpu_shim.py;
- runner code reaches the venv through mltag.pth, not an install: it names the checkout's root, or for
  an installed mltag a folder of links to the install's runners/ and schemas/ (paths.runner_code_dir);
- under a file lock; a failed build is removed; a health check right after the build; the
  completion marker (holding the env key) is written last;
- a package that is not on PyPI is a direct reference in the lock (`ram @ git+https://...@<commit>`);
  MLTAG_FIND_LINKS can point such a name at a local wheel or source folder instead (offline
  machines, CI), see `local_substitutes`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from orchestrator.errors import EnvBuildError
from orchestrator.paths import (
    PROJECT_ROOT,
    REQUIREMENTS_DIR,
    from_checkout,
    link_runner_code,
    runner_code_dir,
    uv_cache_dir,
    venvs_dir,
)

# Bump when the build recipe changes: every env is then rebuilt.
LAYOUT_VERSION = 1
TORCH_PIN = "torch==2.13.0"
MARKER = ".mltag-env.json"
# Local stand-ins for direct references (packages not on PyPI): entries separated by whitespace or
# os.pathsep, each a wheel file, a folder of wheels, or NAME=PATH (PATH a wheel or a source folder).
# Relative paths are read from the checkout's root (an installed mltag: the current folder).
FIND_LINKS_VAR = "MLTAG_FIND_LINKS"
_DIRECT_REF = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*@\s*(\S+)")


@dataclass(frozen=True)
class EnvPaths:
    name: str
    requirements_in: Path
    lock: Path
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def marker(self) -> Path:
        return self.venv / MARKER


def setup_fix(models: str) -> str:
    """The command that builds `models`' envs, as a fix to print: a checkout's make target (it also points
    MLTAG_FIND_LINKS at ../shared), an install's `mltag setup-envs` (there is no Makefile there)."""
    return f"make setup-envs MODELS={models}" if from_checkout() else f"mltag setup-envs --models {models}"


def env_paths(name: str) -> EnvPaths:
    return EnvPaths(name, REQUIREMENTS_DIR / f"{name}.in", REQUIREMENTS_DIR / f"{name}.txt", venvs_dir() / name)


def _python_version() -> str:
    return f"{sys.implementation.name}-{sys.version_info.major}.{sys.version_info.minor}"


def needs_torch(paths: EnvPaths) -> bool:
    """The env pins torch in its .in file (the builder adds the CPU/CUDA wheel; a cluster gives it a GPU)."""
    lines = paths.requirements_in.read_text().splitlines()
    return any(line.split("#")[0].strip().startswith("torch==") for line in lines)


def _needs_tv_shim(paths: EnvPaths) -> bool:
    return "torchvision==" in paths.lock.read_text()


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def direct_references(text: str) -> dict[str, str]:
    """{normalised name: requirement line} for every `name @ url` line of a lock or .in file."""
    out = {}
    for line in text.splitlines():
        match = _DIRECT_REF.match(line.split("#", 1)[0].strip())
        if match:
            out[_norm(match.group(1))] = line.split("#", 1)[0].strip()
    return out


def _find_links_entries() -> list[str]:
    raw = os.environ.get(FIND_LINKS_VAR, "")
    return [e for part in raw.split(os.pathsep) for e in part.split() if e]


def _resolve(path: str) -> Path:
    p = Path(path).expanduser()
    return (p if p.is_absolute() or not from_checkout() else PROJECT_ROOT / p).resolve()


def local_substitutes(names: list[str]) -> dict[str, Path]:
    """Local wheels or source folders (from MLTAG_FIND_LINKS) for the direct references `names`.

    A wheel matches by its file name (`ram-0.0.1-py3-none-any.whl` is `ram`); a source folder only
    when named explicitly (`ram=../recognize-anything`). Names with no local match are left to the
    lock's URL (a pinned VCS commit needs git and network).
    """
    wanted = {_norm(n) for n in names}
    found: dict[str, Path] = {}
    for entry in _find_links_entries():
        name, sep, path = entry.partition("=")
        if sep:
            target = _resolve(path)
            if _norm(name) in wanted and target.exists() and _norm(name) not in found:
                found[_norm(name)] = target
            continue
        target = _resolve(entry)
        wheels = sorted(target.glob("*.whl")) if target.is_dir() else [target] if target.suffix == ".whl" else []
        for wheel in wheels:
            dist = _norm(wheel.name.split("-", 1)[0])
            if dist in wanted and dist not in found:
                found[dist] = wheel
    return found


def _substituted(text: str) -> tuple[str, dict[str, Path]]:
    """`text` (a lock or .in) with its direct references pointed at local substitutes, if any."""
    refs = direct_references(text)
    subs = local_substitutes(list(refs))
    lines = []
    for line in text.splitlines():
        match = _DIRECT_REF.match(line.split("#", 1)[0].strip())
        if match and _norm(match.group(1)) in subs:
            line = f"{match.group(1)} @ {subs[_norm(match.group(1))].as_uri()}"
        lines.append(line)
    return "\n".join(lines) + "\n", subs


def _fingerprint(path: Path) -> str:
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return f"folder:{path}"


def env_key(paths: EnvPaths, subs: dict[str, Path] | None = None) -> str:
    """A hash of everything that went into the env: lock, torch pin, Python, layout, shim, and
    any local wheel standing in for a direct reference (`subs`, default: MLTAG_FIND_LINKS's)."""
    if not paths.lock.exists():
        raise EnvBuildError(f"no lock file {paths.lock}; run `make lock`")
    if subs is None:
        subs = local_substitutes(list(direct_references(paths.lock.read_text())))
    parts = {
        "local": {name: _fingerprint(p) for name, p in sorted(subs.items())} or None,
        "lock": hashlib.sha256(paths.lock.read_bytes()).hexdigest(),
        "torch": TORCH_PIN if needs_torch(paths) else None,
        "python": _python_version(),
        "machine": platform.machine(),
        "layout": LAYOUT_VERSION,
        "shim": hashlib.sha256((PROJECT_ROOT / "runners" / "_tv_cpu_shim.py").read_bytes()).hexdigest()
        if _needs_tv_shim(paths)
        else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def read_marker(paths: EnvPaths) -> dict[str, Any] | None:
    try:
        marker: dict[str, Any] = json.loads(paths.marker.read_text())
    except (OSError, ValueError):
        return None
    return marker


def env_state(name: str) -> tuple[str, str]:
    """("ready" | "missing" | "stale", reason) without running anything."""
    paths = env_paths(name)
    marker = read_marker(paths)
    if marker is None:
        why = "half-built (no completion marker)" if paths.venv.exists() else "not built"
        return "missing", why
    want = env_key(paths)
    recorded = {name: Path(p) for name, p in (marker.get("local") or {}).items()}
    if marker.get("key") != want and recorded and all(p.exists() for p in recorded.values()):
        # built from local stand-ins that are still there and unchanged: current without MLTAG_FIND_LINKS
        want = env_key(paths, recorded)
    if marker.get("key") != want:
        return "stale", f"its pins, Python or layout changed (built as {marker.get('key')}, now {want})"
    if not paths.python.exists():
        return "missing", f"{paths.python} is gone"
    if marker.get("project_root") != str(PROJECT_ROOT):
        return "stale", f"it points at another checkout or install ({marker.get('project_root')})"
    code = Path(marker.get("code") or PROJECT_ROOT)
    if code not in (runner_code_dir(), PROJECT_ROOT) or not (code / "runners" / "host.py").is_file():
        return "stale", f"its path to mltag's runners/ ({code}) is gone"
    return "ready", ""


def _uv() -> str:
    from uv import find_uv_bin  # the uv package is an orchestrator dependency

    return find_uv_bin()


def pip_find_links() -> list[str]:
    """pip's find-links (env var or pip config): uv does not read them, so we pass them on."""
    raw = os.environ.get("UV_FIND_LINKS") or os.environ.get("PIP_FIND_LINKS")
    if not raw:
        try:
            raw = subprocess.run(
                [sys.executable, "-m", "pip", "config", "get", "global.find-links"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            raw = ""
    return [p for p in raw.split() if p]


def _uv_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(UV_CACHE_DIR=str(uv_cache_dir()), UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1")
    env.pop("VIRTUAL_ENV", None)
    return env


def _run(cmd: list[str], log: Callable[[str], None]) -> None:
    log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_uv_env())
    if proc.returncode != 0:
        raise EnvBuildError(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr.strip()[-4000:]}")


def _site_packages(paths: EnvPaths) -> Path:
    out = subprocess.run(
        [str(paths.python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def _health_check(paths: EnvPaths) -> None:
    """Import what the env pins for (and torchvision through the shim); fail loudly."""
    code = (
        "import importlib, runners.base; mods = "
        + repr(_import_names(paths))
        + "\nfor m in mods: importlib.import_module(m)\nprint('ok')"
    )
    proc = subprocess.run(
        [str(paths.python), "-c", code],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")},
    )
    if proc.returncode != 0 or "ok" not in proc.stdout:
        raise EnvBuildError(f"env {paths.name} is unhealthy right after the build:\n{proc.stderr.strip()[-3000:]}")


def _import_names(paths: EnvPaths) -> list[str]:
    lock = paths.lock.read_text()
    names = {
        "onnxruntime": "onnxruntime",
        "transformers": "transformers",
        "open-clip-torch": "open_clip",
        "timm": "timm",
        "torchvision": "torchvision",
        "PIL": "PIL",
        "msgpack": "msgpack",
        "clip-interrogator": "clip_interrogator",
        "httpx": "httpx",
    }
    out = ["msgpack", "PIL"] + (["torch"] if needs_torch(paths) else [])
    out += [mod for pkg, mod in names.items() if f"\n{pkg}==" in "\n" + lock and mod not in out]
    # packages installed from a direct reference (not on PyPI): their top-level module
    out += [name.replace("-", "_") for name in direct_references(lock)]
    return out


def build_env(name: str, log: Callable[[str], None] = print, force: bool = False) -> EnvPaths:
    """Build env `name` unless a complete, current build exists. Returns its paths."""
    paths = env_paths(name)
    if not paths.requirements_in.exists():
        raise EnvBuildError(f"unknown env {name!r}: no {paths.requirements_in}")
    paths.venv.parent.mkdir(parents=True, exist_ok=True)
    if not force and env_state(name)[0] == "ready":
        return paths
    with FileLock(str(paths.venv) + ".lock", timeout=1800):
        if not force and env_state(name)[0] == "ready":  # another process built it meanwhile
            return paths
        state, why = env_state(name)
        log(f"building env '{name}' ({why or state}) at {paths.venv}")
        t0 = time.monotonic()
        shutil.rmtree(paths.venv, ignore_errors=True)
        try:
            _build(paths, log)
        except BaseException:
            shutil.rmtree(paths.venv, ignore_errors=True)  # never leave a half-built env behind
            raise
        log(f"env '{name}' ready in {time.monotonic() - t0:.1f} s")
    return paths


def _build(paths: EnvPaths, log: Callable[[str], None]) -> None:
    uv = _uv()
    _run([uv, "venv", "-q", "--python", sys.executable, str(paths.venv)], log)
    cmd = [uv, "pip", "install", "-q", "--python", str(paths.python)]
    for link in pip_find_links():
        cmd += ["--find-links", link]
    if needs_torch(paths):
        cmd.append(TORCH_PIN)  # same command as the lock: uv never resolves torch on its own
    text, subs = _substituted(paths.lock.read_text())
    for name, path in subs.items():
        log(f"{name}: local {path} instead of the lock's {direct_references(paths.lock.read_text())[name]}")
    requirements = paths.venv / "mltag-requirements.txt"  # the lock as installed (local paths resolved)
    requirements.write_text(text)
    _run(cmd + ["-r", str(requirements)], log)
    site = _site_packages(paths)
    code = link_runner_code()
    (site / "mltag.pth").write_text(str(code) + "\n")
    if _needs_tv_shim(paths):
        # sorts after mltag.pth, so runners/ is importable when this line runs
        (site / "zz_mltag_tv_cpu_shim.pth").write_text("import runners._tv_cpu_shim as s; s.install()\n")
    _health_check(paths)
    marker = {
        "key": env_key(paths),
        "env": paths.name,
        "python": sys.version.split()[0],
        "local": {name: str(p) for name, p in subs.items()},
        "project_root": str(PROJECT_ROOT),
        "code": str(code),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = paths.marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(marker, indent=2))
    os.replace(tmp, paths.marker)  # written last: its presence means "complete"


def lock_env(name: str, log: Callable[[str], None] = print) -> Path:
    """Compile envs/requirements/<name>.in into the committed lock <name>.txt (torch excluded)."""
    paths = env_paths(name)
    if not from_checkout():
        raise EnvBuildError(
            f"`mltag lock` rewrites the committed locks: it runs from a checkout, not an install ({PROJECT_ROOT})",
            fix="git clone the project, then `make lock` there",
            exit_code=2,
        )
    if not paths.requirements_in.is_file():
        known = sorted(p.stem for p in REQUIREMENTS_DIR.glob("*.in"))
        raise EnvBuildError(
            f"no env '{name}': {paths.requirements_in} does not exist",
            fix=f"mltag lock ENV with one of: {', '.join(known)}",
            exit_code=2,
        )
    excludes = venvs_dir() / "torch-excludes.txt"
    excludes.parent.mkdir(parents=True, exist_ok=True)
    excludes.write_text("torch\n")
    source = paths.requirements_in
    original = paths.requirements_in.read_text()
    text, subs = _substituted(original)
    if subs:  # resolve against the local copies, then write the .in's own references back
        source = venvs_dir() / f"{name}.in"
        source.write_text(text)
    _run(
        [
            _uv(),
            "pip",
            "compile",
            "-q",
            "--python-version",
            "3.11",
            "--excludes",
            str(excludes),
            "--no-header",
            str(source),
            "-o",
            str(paths.lock),
        ],
        log,
    )
    if subs:
        refs = direct_references(original)
        rel = (
            str(paths.requirements_in.relative_to(PROJECT_ROOT))
            if paths.requirements_in.is_relative_to(PROJECT_ROOT)
            else str(paths.requirements_in)
        )
        lines = []
        for line in paths.lock.read_text().splitlines():
            match = _DIRECT_REF.match(line.strip())
            if match and _norm(match.group(1)) in subs:
                line = refs[_norm(match.group(1))]
            lines.append(re.sub(rf"-r \S*{re.escape(source.name)}$", f"-r {rel}", line))
        paths.lock.write_text("\n".join(lines) + "\n")
    return paths.lock
