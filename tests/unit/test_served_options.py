"""How a served model's options travel (issue 23), without a runner: --option keys of model.toml [load]
reach the load, the key variable reaches only the runner's environment, a key given as an option is
refused, hosted models are opt-in and announced, and the pure parts of runners/adapters/openai_compat.py."""

from __future__ import annotations

import email.utils
import io
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from orchestrator.cli.choices import option_overrides
from orchestrator.compare.timing import cell_usage
from orchestrator.errors import UsageError
from orchestrator.models.registry import load_registry
from orchestrator.run.jobs import RunOptions, model_job, photos_leave
from orchestrator.run.judge import vision_judge
from orchestrator.store.keys import options_key
from runners._images import DecodedImage
from runners.adapters.openai_compat import (
    LOAD_OPTIONS,
    Adapter,
    EndpointUnavailable,
    message_text,
    retry_after_s,
    scaled_jpeg,
    settings_of,
)

REGISTRY = load_registry()
PY = Path("python")


def _job(name: str, *options: str, tmp_path: Path, batch: int = 1):
    opts = RunOptions(infer_overrides=option_overrides(list(options)), batch_size=batch)
    return model_job(opts, REGISTRY[name], PY, tmp_path)


def test_load_keys_of_an_option_reach_the_load_and_the_rest_the_infer(tmp_path: Path) -> None:
    job = _job(
        "openai-compatible",
        "openai-compatible.base_url=http://127.0.0.1:8000/v1",
        "openai-compatible.model=llava",
        "openai-compatible.concurrency=6",
        "max_new_tokens=7",
        "openai-compatible.prompt=Say it.",
        tmp_path=tmp_path,
    )
    load = job.load_spec["options"]
    assert load["base_url"] == "http://127.0.0.1:8000/v1" and load["model"] == "llava" and load["concurrency"] == 6
    assert job.infer_options["max_new_tokens"] == 7 and job.infer_options["prompt"] == "Say it."
    assert "base_url" not in job.infer_options and "concurrency" not in job.infer_options
    assert job.batch_size == 6  # a batch as wide as the requests it may have in flight
    assert _job("openai-compatible", tmp_path=tmp_path, batch=8).batch_size == 8
    assert _job("wd14", tmp_path=tmp_path).batch_size == 1  # not a served model: --batch-size as given
    # the same rule for every model: qwen25vl's [load] max_pixels is its resize budget, not the decoder's limit
    qwen = _job("qwen25vl", "qwen25vl.max_pixels=401408", tmp_path=tmp_path)
    assert qwen.load_spec["options"]["max_pixels"] == 401408 and "max_pixels" not in qwen.infer_options
    # Ollama's documented --option MODEL.host / MODEL.model reach the adapter's load (runners/adapters/ollama.py)
    for name in ("llava", "minicpm-v45-ollama"):
        ollama = _job(name, f"{name}.host=http://gpu-box:11434", f"{name}.model=llava:13b", tmp_path=tmp_path)
        assert ollama.load_spec["options"]["host"] == "http://gpu-box:11434"
        assert ollama.load_spec["options"]["model"] == "llava:13b" and "host" not in ollama.infer_options


def test_a_captioner_judging_takes_the_captioners_options(tmp_path: Path) -> None:
    judge = vision_judge(REGISTRY["openai-compatible"])
    opts = RunOptions(
        infer_overrides=option_overrides(
            ["openai-compatible.base_url=http://127.0.0.1:1/v1", "openai-compatible-judge.model=judge-model"]
        )
    )
    job = model_job(opts, judge, PY, tmp_path)
    assert job.load_spec["options"]["base_url"] == "http://127.0.0.1:1/v1"
    assert job.load_spec["options"]["model"] == "judge-model" and job.infer_options["judge"] is True


def test_the_key_reaches_only_the_runner_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert _job("openai-gpt4o", tmp_path=tmp_path).extra_env == {}
    monkeypatch.setenv("OPENAI_API_KEY", "sk-unit-1")
    monkeypatch.setenv("OTHER_KEY", "sk-unit-2")
    job = _job("openai-gpt4o", tmp_path=tmp_path)
    assert job.extra_env == {"OPENAI_API_KEY": "sk-unit-1"}
    assert "sk-unit-1" not in repr(job.load_spec) + repr(job.infer_options)
    named = _job("openai-gpt4o", "openai-gpt4o.api_key_env=OTHER_KEY", tmp_path=tmp_path)
    assert named.extra_env == {"OTHER_KEY": "sk-unit-2"}
    assert _job("wd14", tmp_path=tmp_path).extra_env == {}


@pytest.mark.parametrize(
    "option", ["openai-gpt4o.api_key=sk-x", "api_key=sk-x", "m.token=t", "m.API_KEY=x", "openai-compatible.password=p"]
)
def test_a_secret_as_an_option_is_refused(option: str) -> None:
    with pytest.raises(UsageError, match="an API key is never given as an option") as refused:
        option_overrides([option])
    assert "sk-x" not in str(refused.value)


def test_naming_the_variable_is_fine() -> None:
    assert option_overrides(["openai-gpt4o.api_key_env=MY_KEY"]) == {"openai-gpt4o.api_key_env": "MY_KEY"}


def test_hosted_models_are_announced_and_local_ones_are_not() -> None:
    specs = [REGISTRY[m] for m in ("openai-gpt4o", "qwen2vl-72b-vllm", "openai-compatible", "llava", "wd14")]
    assert photos_leave(RunOptions(), specs) == {"openai-gpt4o": "api.openai.com"}
    far = RunOptions(
        infer_overrides={
            "qwen2vl-72b-vllm.base_url": "http://gpu-box:8000/v1",
            "openai-compatible.base_url": "http://[::1]:8080/v1",
        }
    )
    assert photos_leave(far, specs) == {"openai-gpt4o": "api.openai.com", "qwen2vl-72b-vllm": "gpu-box"}


def test_request_settings_do_not_change_the_options_key(tmp_path: Path) -> None:
    def key(*options: str) -> str:
        job = _job("openai-compatible", "openai-compatible.base_url=http://127.0.0.1:1/v1", *options, tmp_path=tmp_path)
        return options_key(job.spec.adapter, job.load_spec, job.infer_options)

    base = key()
    assert (
        key("openai-compatible.concurrency=9", "openai-compatible.max_retries=0", "openai-compatible.deadline_s=5")
        == base
    )  # how fast and how hard it asks: the same results
    assert key("openai-compatible.max_pixels=200000") != base and key("openai-compatible.model=x") != base


def test_cell_usage_reads_an_endpoints_usage_or_a_captioners_counts() -> None:
    usage = {"prompt_tokens": 90, "completion_tokens": 12}
    assert cell_usage({"status": "ok", "raw": {"usage": usage, "retries": 2}}) == (90, 12, 2)
    assert cell_usage(
        {
            "status": "ok",
            "raw": {
                "generations": {
                    "caption": {"prompt_tokens": 30, "new_tokens": 5},
                    "tags": {"prompt_tokens": 31, "new_tokens": 9},
                }
            },
        }
    ) == (61, 14, 0)
    assert cell_usage({"status": "ok", "raw": {"scores": [0.1]}}) is None and cell_usage({"status": "timeout"}) is None


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry_after_s("3") == 3.0 and retry_after_s("0.5") == 0.5 and retry_after_s(None) is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 27 <= (retry_after_s(later) or 0) <= 30
    assert retry_after_s("soon") is None and retry_after_s("-4") == 0.0


def test_photos_are_scaled_to_max_pixels_keeping_their_aspect() -> None:
    big = DecodedImage("a", "a.jpg", Image.new("RGB", (4000, 3000), (200, 10, 10)), {})
    data, size = scaled_jpeg(big, 1_048_576)
    assert size[0] * size[1] <= 1_048_576 and abs(size[0] / size[1] - 4 / 3) < 0.01 and size[0] > 1150
    assert Image.open(io.BytesIO(data)).size == size
    small = DecodedImage("b", "b.png", Image.new("RGBA", (300, 200)), {})
    assert scaled_jpeg(small, 1_048_576)[1] == (300, 200)  # never enlarged; transparency flattened for JPEG


def test_settings_name_the_fix() -> None:
    def spec(**options: Any) -> Any:
        return {"name": "openai-compatible", "hub_id": "auto", "options": options}

    with pytest.raises(EndpointUnavailable, match=r"`--option openai-compatible.base_url=http://HOST:PORT/v1`"):
        settings_of(spec())
    with pytest.raises(EndpointUnavailable, match="is not an http"):
        settings_of(spec(base_url="127.0.0.1:8000/v1"))
    with pytest.raises(ValueError, match="option concurrency must be an integer >= 1"):
        settings_of(spec(base_url="http://h/v1", concurrency=0))
    s = settings_of(spec(base_url="http://h:1/v1/", model="m"))
    assert s.base_url == "http://h:1/v1" and s.model == "m" and s.max_pixels == 1_048_576 and s.detail is None


def test_message_text_takes_a_string_or_text_parts() -> None:
    assert message_text("a cat") == "a cat" and message_text(None) == ""
    assert message_text([{"type": "text", "text": "a "}, {"type": "text", "text": "cat"}]) == "a cat"


def test_every_endpoint_model_names_every_load_option_and_a_misplaced_one_is_an_error() -> None:
    served = [spec for spec in REGISTRY.values() if spec.server == "openai"]
    assert {s.name for s in served} == {"openai-compatible", "qwen2vl-72b-vllm", "openai-gpt4o"}
    for spec in served:  # so that --option MODEL.KEY=V reaches the load for each of them
        assert set(LOAD_OPTIONS) <= set(spec.load), spec.name
    adapter = Adapter()
    adapter.name = "my-endpoint"
    with pytest.raises(
        ValueError,
        match=r"backoff_s, concurrency: load option\(s\) of my-endpoint.*"
        r"envs/my-endpoint/model.toml \[load\]",
    ):
        adapter._body({"concurrency": 2, "backoff_s": 0.1, "max_new_tokens": 9})
    assert adapter._body({"max_new_tokens": 9, "extra_body": {"top_k": 1}}) == {
        "temperature": 0,
        "seed": 0,
        "max_tokens": 9,
        "top_k": 1,
    }
