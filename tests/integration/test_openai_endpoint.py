"""Issue 23's done criteria: a served model beside local ones in one `mltag analyze` (wd14 + clip on tiny
models + the stand-in OpenAI-compatible server of tests/openai_server.py), with retries, concurrency and
token usage recorded, the JSON valid against the schema, and the API key in no output, store or log.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest

from tests.openai_server import SERVED, SNAPSHOT, StandInOpenAI
from tests.support import SAMPLES, SCHEMA, mltag
from tests.tiny_models import tiny_weights

pytestmark = pytest.mark.adapter

KEY = "sk-proj-Zq8v3Lw9Xk2Tn5Rb7Hm4Jc6Pd1Fs0Gy"
ENDPOINT = "openai-compatible"


def _photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea.png", "rocket.jpg", "coffee.png"):
        shutil.copy(SAMPLES / name, folder / name)
    return folder


def test_side_by_side_with_wd14_and_clip_and_no_key_anywhere(tmp_path: Path, env_python: Callable[[str], Path]) -> None:
    env_python("slim")  # the served model's env: it has no tiny model whose build would create it
    folder = _photos(tmp_path)
    weights = [f"--weights={m}={p}" for m, p in tiny_weights(["wd14", "clip"]).items()]
    store, out = tmp_path / "results.sqlite", tmp_path / "analyze.json"
    faults = ["429", "500", "drop"]
    with StandInOpenAI(key=KEY, faults=faults, retry_after="0.1", answer_s=0.2) as server:
        proc = mltag(
            "analyze",
            str(folder),
            "--models",
            f"wd14,clip,{ENDPOINT}",
            *weights,
            "--format",
            "json",
            "--out",
            str(out),
            "--store",
            str(store),
            "--device",
            "cpu",
            "--ask",
            "both",
            "--option",
            f"{ENDPOINT}.base_url={server.url}",
            "--option",
            f"{ENDPOINT}.model={SERVED}",
            "--option",
            f"{ENDPOINT}.backoff_s=0.05",
            "--option",
            f"{ENDPOINT}.concurrency=3",
            env={"OPENAI_COMPATIBLE_API_KEY": KEY},
            timeout=900,
        )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "leave this machine" not in proc.stderr  # 127.0.0.1: the photos stay here
    doc = json.loads(out.read_text())
    jsonschema.validate(doc, SCHEMA)
    cells = {(Path(img["path"]).name, m): c for img in doc["images"] for m, c in img["results"].items()}
    assert len(cells) == 9
    assert {c["status"] for c in cells.values()} == {"ok"}, {k: c["status"] for k, c in cells.items()}
    served = [c for (_, m), c in cells.items() if m == ENDPOINT]
    for name in ("chelsea.png", "rocket.jpg", "coffee.png"):  # each photo's own answer: nothing lost or swapped
        assert cells[(name, ENDPOINT)]["tags"][1]["name"] in cells[(name, ENDPOINT)]["caption"].replace(" by ", "x")
    assert sum(c["raw"]["retries"] for c in served) == len(faults) and len(server.chats()) == 6 + len(faults)
    assert {c["raw"]["served_model"] for c in served} == {SNAPSHOT}
    # the concurrency option reached the runner, and its batches were widened for it (--batch-size is 1):
    # requests overlapped, never more than 3 (a batch forms from the photos hashed so far, so maybe not all 3)
    assert 1 < server.max_in_flight <= 3 and 1 < max(c["batch_size"] for c in served) <= 3
    assert all(r["authorization"] == f"Bearer {KEY}" for r in server.requests)  # the key was used...
    entry = next(m for m in doc["models"] if m["name"] == ENDPOINT)
    assert entry["model_version"] == f"{SERVED} (/models/{SERVED})" and entry["device"] == f"endpoint {server.url}"
    timing = doc["comparison"]["folder"]["timing"]
    assert timing[ENDPOINT]["prompt_tokens"] == sum(c["raw"]["usage"]["prompt_tokens"] for c in served) > 0
    assert timing[ENDPOINT]["completion_tokens"] == sum(c["raw"]["usage"]["completion_tokens"] for c in served) > 0
    assert timing[ENDPOINT]["retries"] == len(faults) and "prompt_tokens" not in timing["wd14"]

    # ...and is in no output, nor the store, nor a runner log
    seen = {"analyze stdout": proc.stdout, "analyze stderr": proc.stderr, "analyze --out": out.read_text()}
    for fmt in ("table", "json", "jsonl", "csv"):
        shown = mltag("report", str(folder), "--store", str(store), "--format", fmt, "--show-timing")
        assert shown.returncode == 0, shown.stderr
        seen[f"report {fmt}"] = shown.stdout + shown.stderr
    assert "tokens in" in seen["report table"] and "retries" in seen["report table"]
    html = tmp_path / "report.html"
    assert mltag("report", str(folder), "--store", str(store), "--html", str(html)).returncode == 0
    seen["report html"] = html.read_text()
    assert "<th>tokens in</th>" in seen["report html"]
    for path in [store, *store.parent.glob(store.name + "-*"), *(Path(m["log"]) for m in doc["models"])]:
        seen[str(path)] = path.read_bytes().decode("utf-8", "replace")
    assert any(
        "runners.adapters.openai_compat" in text for name, text in seen.items() if name.endswith(f"{ENDPOINT}.log")
    )
    leaks = [name for name, text in seen.items() if KEY in text or KEY[8:24] in text]
    assert leaks == []


def test_a_remote_endpoint_gets_a_notice_that_yes_silences(tmp_path: Path, env_python: Callable[[str], Path]) -> None:
    env_python("slim")
    folder = _photos(tmp_path)
    # a documentation address (TEST-NET-1, RFC 5737): nothing answers, the load fails fast after the notice
    args = [
        "analyze",
        str(folder),
        "--models",
        ENDPOINT,
        "--no-store",
        "--format",
        "json",
        "--option",
        f"{ENDPOINT}.base_url=http://192.0.2.1:9/v1",
        "--option",
        f"{ENDPOINT}.request_timeout_s=0.5",
    ]
    loud = mltag(*args)
    text = " ".join(loud.stderr.split())  # rich wraps lines at the terminal's width
    assert loud.returncode == 1
    assert text.startswith(f"mltag: {ENDPOINT} sends the photos to 192.0.2.1: they leave this machine")
    assert "no OpenAI-compatible server answers at http://192.0.2.1:9/v1" in text
    for quiet in (mltag(*args, "--yes"), mltag(*args, env={"MLTAG_YES": "1"})):
        assert quiet.returncode == 1 and "leave this machine" not in quiet.stderr


def test_a_key_given_as_an_option_is_refused_before_anything_runs(tmp_path: Path) -> None:
    proc = mltag("analyze", str(_photos(tmp_path)), "--models", ENDPOINT, "--option", f"{ENDPOINT}.api_key={KEY}")
    text = " ".join(proc.stderr.split())
    assert proc.returncode == 2 and "an API key is never given as an option" in text
    assert f"--option {ENDPOINT}.api_key_env=MY_KEY" in text and KEY not in proc.stderr + proc.stdout


def said(proc: subprocess.CompletedProcess[str]) -> str:
    return " ".join(proc.stdout.split())  # rich wraps lines at the terminal's width


def test_health_checks_the_endpoint_the_key_and_the_model(env_python: Callable[[str], Path]) -> None:
    env_python("slim")
    base = ["health", ENDPOINT, "--option"]
    with StandInOpenAI(key=KEY) as server:
        ok = mltag(*base, f"{ENDPOINT}.base_url={server.url}", env={"OPENAI_COMPATIBLE_API_KEY": KEY})
        wrong = mltag(*base, f"{ENDPOINT}.base_url={server.url}", env={"OPENAI_COMPATIBLE_API_KEY": "sk-bad-123456"})
        unlisted = mltag(
            *base,
            f"{ENDPOINT}.base_url={server.url}",
            "--option",
            f"{ENDPOINT}.model=gpt-9",
            env={"OPENAI_COMPATIBLE_API_KEY": KEY},
        )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"{SERVED} (/models/{SERVED}) on endpoint {server.url} (reachable, key accepted, model listed)" in said(ok)
    assert "httpx 0.28.1" in said(ok)
    assert wrong.returncode == 1 and "refused the API key in $OPENAI_COMPATIBLE_API_KEY" in said(wrong)
    assert "fix: export OPENAI_COMPATIBLE_API_KEY=..." in said(wrong) and "sk-bad-123456" not in said(wrong)
    assert unlisted.returncode == 1 and f"does not serve model 'gpt-9' (it lists: {SERVED})" in said(unlisted)
    assert f"fix: --option {ENDPOINT}.model=NAME" in said(unlisted)
    down = mltag(*base, f"{ENDPOINT}.base_url=http://127.0.0.1:9/v1")
    assert down.returncode == 1 and "no OpenAI-compatible server answers" in said(down)
    assert "fix: vllm serve MODEL" in said(down)
