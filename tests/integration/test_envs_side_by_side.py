"""Issue 10's done criteria: models needing conflicting library versions run in one `analyze`, each
in its own env, offline, on tiny models (and a stand-in Ollama server), and `health` shows each env's
library versions. The runners' hello replies, recorded in the JSON output, prove which transformers
each model ran with.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from orchestrator.models.registry import load_registry
from schemas.status import SUCCESS
from tests.ollama_server import StandInOllama, closed_port
from tests.support import SAMPLES, SCHEMA, mltag
from tests.tiny_models import tiny_weights

pytestmark = pytest.mark.adapter

# model -> the transformers version its env pins (None: no transformers in its env)
EXPECTED = {
    "moondream2": "4.55.0",
    "ram-plus": "4.55.4",
    "clip-interrogator": "5.23.0",
    "llava": None,
    "wd14": None,
    "minicpm-v45": "4.55.0",
    "phi35-vision": "4.48.3",
}


def test_one_analyze_over_every_env(tmp_path: Path, env_python: Callable[[str], Path]) -> None:
    registry = load_registry()
    models = [m for m in EXPECTED if m in registry]
    for env in sorted({registry[m].env for m in models}):  # llava's env too: it has no tiny model to build it
        env_python(env)
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea.png", "rocket.jpg"):
        shutil.copy(SAMPLES / name, folder / name)
    weights = [f"--weights={m}={path}" for m, path in tiny_weights(models).items()]
    with StandInOllama() as server:
        proc = mltag(
            "analyze",
            str(folder),
            "--models",
            ",".join(models),
            *weights,
            "--format",
            "json",
            "--offline",
            "--device",
            "cpu",
            "--no-store",
            "--ask",
            "both",
            "--option",
            "max_new_tokens=6",
            "--option",
            "clip-interrogator.mode=fast",
            "--option",
            "clip-interrogator.max_flavors=8",
            env={"OLLAMA_HOST": server.url},
            timeout=1800,
        )
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, SCHEMA)
    statuses = {(img["path"], m): c["status"] for img in doc["images"] for m, c in img["results"].items()}
    assert len(statuses) == 2 * len(models) and set(statuses.values()) <= SUCCESS, statuses
    by_name = {m["name"]: m for m in doc["models"]}
    envs = {}
    for name in models:
        entry = by_name[name]
        assert entry["status"] == "ok", (name, entry["message"])
        assert entry["remote_code"] is registry[name].remote_code
        packages = entry["runner"]["packages"]
        assert packages.get("transformers") == EXPECTED[name], (name, packages)
        envs[registry[name].env] = packages.get("transformers")
    # two transformers majors at once, each model in its own env
    assert envs["tf4"] == "4.55.0" and envs["modern"] == "5.23.0" and envs["ram"] == "4.55.4"
    assert "torch" not in by_name["llava"]["runner"]["packages"]  # the slim env: HTTP only


@pytest.mark.parametrize("model", ["moondream2", "ram-plus"])
def test_health_deep_shows_env_and_versions(model: str) -> None:
    [(name, path)] = tiny_weights([model]).items()
    # a random model never ends its text: moondream2's 256 new tokens were most of this check's time
    short = ["--option", f"{model}.max_new_tokens=4"] if model == "moondream2" else []
    proc = mltag("health", model, "--deep", f"--weights={name}={path}", "--device", "cpu", *short)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env = load_registry()[model].env
    assert f"env {env}: python" in proc.stdout and f"transformers {EXPECTED[model]}" in proc.stdout
    assert "deep: inference" in proc.stdout


def test_health_of_a_served_model() -> None:
    """`mltag health llava` asks the server: answers? model pulled? and names the fix when not."""
    with StandInOllama() as server:
        ok = mltag("health", "llava", env={"OLLAMA_HOST": server.url})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "env slim: python" in ok.stdout and "ollama 0.6.3" in ok.stdout and "llava:latest@ab12ab12ab12" in ok.stdout
    with StandInOllama({}) as server:
        missing = mltag("health", "llava", env={"OLLAMA_HOST": server.url})
    assert missing.returncode == 1 and "is not pulled" in missing.stdout and "fix: ollama pull llava" in missing.stdout
    down = mltag("health", "llava", env={"OLLAMA_HOST": closed_port()})
    assert down.returncode == 1 and "no Ollama server answers" in down.stdout and "fix: ollama serve" in down.stdout
