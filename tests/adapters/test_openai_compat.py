"""The openai_compat adapter (openai-compatible, qwen2vl-72b-vllm, openai-gpt4o) through the real runner host,
against a stand-in OpenAI-compatible server (tests/openai_server.py) that follows the documented
chat-completions API: image parts, the model list, its error replies, and scripted faults (429 with
Retry-After, 500/503, slow answers, dropped connections). The server is not a model: its answer
describes the image it received, which is what lets these tests see the picture arrive, and at what size.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from orchestrator.errors import RunnerError
from orchestrator.models.loadspec import build_load_spec
from orchestrator.models.registry import load_registry
from orchestrator.run.jobs import served_env
from orchestrator.run.processes import RunnerProcess
from tests.ollama_server import closed_port
from tests.openai_server import SERVED, SNAPSHOT, StandInOpenAI
from tests.support import SAMPLES

pytestmark = pytest.mark.adapter

KEY = "sk-test-7f3a9c1e5b2d4860a1b2c3d4e5f60718"
FAST = {"backoff_s": 0.05, "concurrency": 2}  # retries in tens of milliseconds, two requests at a time


@pytest.fixture()
def serve(
    env_python: Callable[[str], Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., tuple[dict, list[dict], Path]]:
    """Run a registry model on images through the real runner host, as the pipeline starts it: the
    environment filtered, plus the one key variable its api_key_env names (orchestrator/run/jobs.py)."""

    def run(
        name: str,
        paths: Sequence[Path],
        key: str | None = None,
        load: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        **infer: Any,
    ) -> tuple[dict, list[dict], Path]:
        spec = load_registry()[name]
        load_spec = build_load_spec(spec, offline=True, overrides=load)
        if key is not None:
            monkeypatch.setenv(load_spec["options"]["api_key_env"], key)
        log = tmp_path / f"{name}.log"
        runner = RunnerProcess.start(
            env_python(spec.env), spec.adapter, log, offline=True, extra_env=served_env(load_spec)
        )
        try:
            runner.call("hello", timeout=120)
            info = runner.call("load", timeout=60, spec=load_spec)
            images = [
                {
                    "id": f"img{i}",
                    "name": str(p),
                    "data": Path(p).read_bytes(),
                    **({"context": context} if context else {}),
                }
                for i, p in enumerate(paths)
            ]
            out = runner.call("infer", timeout=120, images=images, options={**spec.infer, **infer})
            return info, out["results"], log
        finally:
            runner.stop()

    return run


def _sent(chat: dict[str, Any]) -> Image.Image:
    url = chat["body"]["messages"][0]["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def test_caption_and_tags_with_usage_and_served_version(serve) -> None:
    paths = [SAMPLES / "chelsea.png", SAMPLES / "rocket.jpg", SAMPLES / "coffee.png"]
    with StandInOpenAI(key=KEY) as server:
        load, cells, log = serve(
            "openai-compatible", paths, key=KEY, load={"base_url": server.url, "model": SERVED, **FAST}, ask="both"
        )
    assert load["model_version"] == f"{SERVED} (/models/{SERVED})" and load["device"] == f"endpoint {server.url}"
    assert any("this machine" in n and "from $OPENAI_COMPATIBLE_API_KEY" in n for n in load["notes"])
    for cell, path in zip(cells, paths, strict=True):
        width, height = Image.open(path).size
        assert cell["status"] == "ok", cell.get("message")
        assert f"{width} by {height} pixels" in cell["caption"]  # small samples: sent at full size
        assert [t["name"] for t in cell["tags"]][1] == f"{width}x{height}"
        assert all(t["estimated"] and t["category"] == "vlm" for t in cell["tags"])
        raw = cell["raw"]
        caption, tags = raw["generations"]["caption"], raw["generations"]["tags"]
        assert caption["new_tokens"] == len(caption["text"].split()) and caption["prompt_tokens"] > 85
        assert raw["usage"] == {
            "prompt_tokens": caption["prompt_tokens"] + tags["prompt_tokens"],
            "completion_tokens": caption["new_tokens"] + tags["new_tokens"],
            "total_tokens": raw["usage"]["prompt_tokens"] + raw["usage"]["completion_tokens"],
        }
        assert raw["served_model"] == SNAPSHOT and caption["system_fingerprint"] == "fp_standin1"
        assert raw["retries"] == 0 and raw["attempts"] == [] and caption["finish_reason"] == "stop"
    chats = server.chats()
    assert len(chats) == 6
    for chat in chats:  # the documented request: a text part and a base64 JPEG image part, greedy, bounded
        body = chat["body"]
        assert body["model"] == SERVED and body["temperature"] == 0 and body["seed"] == 0
        assert body["max_tokens"] == 384 and chat["authorization"] == f"Bearer {KEY}"
        assert _sent(chat).format == "JPEG" and _sent(chat).mode == "RGB"
    assert KEY not in log.read_text()


def test_max_pixels_scales_the_photo_keeping_its_aspect(serve) -> None:
    with StandInOpenAI() as server:
        _, [cell], _ = serve(
            "openai-compatible", [SAMPLES / "rocket.jpg"], load={"base_url": server.url, "max_pixels": 40_000}
        )
    width, height = Image.open(SAMPLES / "rocket.jpg").size
    sent = server.chats()[0]["image_size"]
    assert sent[0] * sent[1] <= 40_000 < width * height
    assert abs(sent[0] / sent[1] - width / height) < 0.02
    assert cell["raw"]["sent"] == {"width": sent[0], "height": sent[1], "jpeg_bytes": cell["raw"]["sent"]["jpeg_bytes"]}
    assert f"{sent[0]} by {sent[1]} pixels" in cell["caption"]


def test_model_auto_takes_the_one_served_model(serve) -> None:
    with StandInOpenAI(models=("llava-v1.6",)) as server:
        load, [cell], _ = serve("openai-compatible", [SAMPLES / "coffee.png"], load={"base_url": server.url})
    assert load["model_version"].startswith("llava-v1.6") and cell["status"] == "ok"
    assert server.chats()[0]["body"]["model"] == "llava-v1.6"


def test_faults_are_retried_counted_and_nothing_is_lost(serve) -> None:
    """429 with Retry-After, 500, 503 and a dropped connection, spread over four photos sent two at a time:
    every photo gets its answer, every failed attempt is counted and recorded with what it got."""
    paths = [SAMPLES / "chelsea.png", SAMPLES / "rocket.jpg", SAMPLES / "coffee.png", SAMPLES / "chelsea.png"]
    faults = ["429", "500", "drop", "503", "429"]
    with StandInOpenAI(faults=faults, retry_after="0.2") as server:
        _, cells, _ = serve("openai-compatible", paths, load={"base_url": server.url, **FAST})
    assert [c["status"] for c in cells] == ["ok"] * 4
    for cell, path in zip(cells, paths, strict=True):  # each photo's own answer, in order
        width, height = Image.open(path).size
        assert f"{width} by {height} pixels" in cell["caption"]
    attempts = [a for c in cells for a in c["raw"]["attempts"]]
    assert sum(c["raw"]["retries"] for c in cells) == len(faults) == len(attempts)
    assert len(server.chats()) == 4 + len(faults)
    errors = sorted(a["error"].split(":")[0] for a in attempts)
    assert errors == sorted(["HTTP 429", "HTTP 429", "HTTP 500", "HTTP 503", "connection failed (RemoteProtocolError"])
    assert {a["waited_s"] for a in attempts if a["error"].startswith("HTTP 429")} == {0.2}  # Retry-After honoured


def test_persistent_rate_limit_is_an_error_cell_naming_the_fix(serve) -> None:
    with StandInOpenAI(faults=["429"] * 3, retry_after="0") as server:
        _, [cell], _ = serve(
            "openai-compatible", [SAMPLES / "coffee.png"], load={"base_url": server.url, **FAST, "max_retries": 2}
        )
    assert cell["status"] == "error" and "HTTP 429" in cell["message"] and "gave up after 3 tries" in cell["message"]
    assert "concurrency" in cell["fix"] and len(server.chats()) == len(cell["raw"]["attempts"]) == 3
    assert cell["raw"]["retries"] == 2  # the third failure was not retried


def test_a_retry_after_beyond_the_deadline_and_a_400_end_at_once(serve) -> None:
    with StandInOpenAI(faults=["429", "400"], retry_after="3600") as server:
        _, [late, refused], _ = serve(
            "openai-compatible",
            [SAMPLES / "coffee.png", SAMPLES / "rocket.jpg"],
            load={"base_url": server.url, **FAST, "concurrency": 1, "deadline_s": 30},
        )
    # a wait the deadline cannot hold is not waited: a timeout cell now, saying what the server asked
    assert late["status"] == "timeout" and "asked to wait 3600 s" in late["message"] and late["inference_s"] < 5
    assert late["raw"]["retries"] == 0 and len(late["raw"]["attempts"]) == 1
    # a 4xx other than 401/403 would answer the same again: an error cell at once, no retry
    assert refused["status"] == "error" and "HTTP 400: Invalid image: the image is larger" in refused["message"]
    assert "max_pixels" in refused["fix"] and refused["raw"]["attempts"] == [] and len(server.chats()) == 2


def test_a_slow_answer_is_retried_then_times_out_at_the_deadline(serve) -> None:
    # one slow answer: the request times out after 1 s, the retry answers
    with StandInOpenAI(faults=["slow"], slow_s=3) as server:
        _, [ok], _ = serve(
            "openai-compatible",
            [SAMPLES / "coffee.png"],
            load={"base_url": server.url, **FAST, "request_timeout_s": 1, "deadline_s": 10},
        )
    assert ok["status"] == "ok" and ok["raw"]["retries"] == 1
    assert ok["raw"]["attempts"][0]["error"].startswith("no answer in time (ReadTimeout")
    # always slow: the image's deadline ends it, as a timeout cell the adapter answers (the runner lives on)
    with StandInOpenAI(faults=["slow"] * 5, slow_s=3) as server:
        _, [late], _ = serve(
            "openai-compatible",
            [SAMPLES / "coffee.png"],
            load={"base_url": server.url, **FAST, "request_timeout_s": 1, "deadline_s": 2.5},
        )
    assert late["status"] == "timeout" and "no answer within the 2.5 s deadline" in late["message"]
    assert len(late["raw"]["attempts"]) == len(server.chats()) == late["raw"]["retries"] + 1 >= 2
    assert "deadline_s" in late["fix"]
    assert late["inference_s"] < 4


def test_a_wrong_key_fails_the_load_naming_the_variable_and_never_the_key(serve) -> None:
    with StandInOpenAI(key=KEY) as server, pytest.raises(RunnerError) as failure:
        serve(
            "openai-compatible",
            [SAMPLES / "coffee.png"],
            key="sk-wrong-0123456789abcdef",
            load={"base_url": server.url},
        )
    message = str(failure.value)
    assert "refused the API key in $OPENAI_COMPATIBLE_API_KEY" in message
    assert "`export OPENAI_COMPATIBLE_API_KEY=...`" in message
    assert "sk-wrong-0123456789abcdef" not in message and "[redacted]" in message  # the server echoed it
    assert server.requests[0]["authorization"] == "Bearer sk-wrong-0123456789abcdef"


def test_a_missing_required_key_and_an_unlisted_model_name_their_fix(serve, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with StandInOpenAI() as server:
        with pytest.raises(
            RunnerError,
            match=r"needs an API key in the environment variable OPENAI_API_KEY.*"
            r"`export OPENAI_API_KEY=\.\.\.`",
        ):
            serve("openai-gpt4o", [SAMPLES / "coffee.png"], load={"base_url": server.url})
        with pytest.raises(
            RunnerError,
            match=rf"does not serve model 'gpt-4o' \(it lists: {SERVED}\).*"
            r"--option openai-gpt4o.model=NAME",
        ):
            serve("openai-gpt4o", [SAMPLES / "coffee.png"], key=KEY, load={"base_url": server.url})
        assert not server.chats()  # nothing sent before the endpoint is known good


def test_server_down_and_a_wrong_root_say_what_to_fix(serve) -> None:
    with pytest.raises(RunnerError, match=r"no OpenAI-compatible server answers at .*`vllm serve MODEL`"):
        serve("qwen2vl-72b-vllm", [SAMPLES / "coffee.png"], load={"base_url": closed_port() + "/v1"})
    with StandInOpenAI() as server, pytest.raises(RunnerError, match=r"HTTP 404\): base_url must be the API root"):
        serve("openai-compatible", [SAMPLES / "coffee.png"], load={"base_url": server.url.removesuffix("/v1")})
    with pytest.raises(RunnerError, match=r"needs the endpoint's API root: `--option openai-compatible.base_url="):
        serve("openai-compatible", [SAMPLES / "coffee.png"])


def test_concurrency_bounds_the_requests_in_flight(serve) -> None:
    paths = [SAMPLES / "coffee.png"] * 6
    with StandInOpenAI(answer_s=0.4) as server:
        _, cells, _ = serve("openai-compatible", paths, load={"base_url": server.url, "concurrency": 3})
    assert [c["status"] for c in cells] == ["ok"] * 6
    assert server.max_in_flight == 3


def test_as_the_judge_it_sees_the_photo_and_the_outputs(serve) -> None:
    context = {"outputs": [{"model": "wd14", "kind": "tagger", "caption": None, "tags": ["window", "wall"]}]}
    with StandInOpenAI() as server:
        spec = load_registry()["openai-compatible"]
        _, [cell], _ = serve(
            "openai-compatible",
            [SAMPLES / "coffee.png"],
            load={"base_url": server.url},
            context=context,
            judge=True,
            max_new_tokens=spec.infer["max_new_tokens"],
        )
    [chat] = server.chats()
    prompt = chat["body"]["messages"][0]["content"][0]["text"]
    assert "DESCRIPTION:" in prompt and "[wd14, tagger]\ntags: window, wall" in prompt
    assert chat["image_size"] == Image.open(SAMPLES / "coffee.png").size  # and the photo
    assert cell["raw"]["saw_image"] is True and cell["raw"]["generations"]["merge"]["served_model"] == SNAPSHOT
    assert cell["raw"]["inputs"] == ["wd14"] and cell["raw"]["usage"]["completion_tokens"] > 0
