"""Vision models served by a running Ollama (`llava`, `llava:13b`, `openbmb/minicpm-v4.5`, ...), over HTTP.

Runs in the `slim` env (no torch): the official `ollama` client speaks Ollama's documented API.
Load checks the server and the model: `GET /api/tags` (is the model pulled? its digest is what the
output names as the version), `POST /api/show` (does it take images?). Infer sends one
`POST /api/chat` per prompt and image: the user message with the image as base64 (the client
encodes the bytes), greedy options (temperature 0, seed 0, num_predict = max_new_tokens) and
`keep_alive`, so the server keeps the model loaded between images instead of reloading it.

Server: load option `host` (`--option llava.host=http://gpu-box:11434`), else OLLAMA_HOST, else
Ollama's default http://localhost:11434. Prompts and tags work as for every captioner (runners/_vlm.py:
`prompt`, `tags_prompt`, `ask`; tag scores estimated by position). Token counts and timings are
Ollama's own (prompt_eval_count, eval_count, eval_duration).
"""

from __future__ import annotations

import io
import os
import time
from typing import Any

from runners._images import DecodedImage
from runners._vlm import TAG_SCORE_NOTE, prompt_runs_result, prompts_to_run
from runners.base import ImageResult, LoadResult
from schemas.protocol import LoadSpec

DEFAULT_HOST = "http://localhost:11434"
DEFAULT_KEEP_ALIVE = "30m"
DEFAULT_MAX_NEW_TOKENS = 384


class OllamaUnavailable(RuntimeError):
    """The server does not answer, or does not have the model: the message names the fix."""


def host_of(options: dict[str, Any]) -> str:
    return str(options.get("host") or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST)


def same_model(wanted: str, listed: str) -> bool:
    """Ollama names: `llava` is `llava:latest`."""

    def full(name: str) -> str:
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"

    return full(wanted) == full(listed)


def chat_options(options: dict[str, Any]) -> dict[str, Any]:
    max_new = options.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
    if isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 1:
        raise ValueError(f"option max_new_tokens must be an integer >= 1, got {max_new!r}")
    return {"temperature": 0, "seed": 0, "num_predict": max_new, **(options.get("ollama_options") or {})}


def jpeg(image: DecodedImage) -> bytes:
    """The decoded image (EXIF orientation applied, RGB) as JPEG: what the model sees."""
    buf = io.BytesIO()
    image.rgb().save(buf, format="JPEG", quality=95)
    return buf.getvalue()


class Adapter:
    def __init__(self) -> None:
        self.client: Any = None
        self.model = ""
        self.host = DEFAULT_HOST
        self.keep_alive: str | float = DEFAULT_KEEP_ALIVE

    def load(self, spec: LoadSpec) -> LoadResult:
        import ollama

        options = spec["options"]
        self.model = str(options.get("model") or spec["hub_id"])
        self.host = host_of(options)
        self.keep_alive = options.get("keep_alive", DEFAULT_KEEP_ALIVE)
        self.client = ollama.Client(host=self.host, timeout=options.get("http_timeout_s", 600))
        try:
            listed = self.client.list().models
        except (ConnectionError, ollama.ResponseError) as exc:
            raise OllamaUnavailable(
                f"no Ollama server answers at {self.host} ({exc}); start it with `ollama serve`, "
                f"or set OLLAMA_HOST / --option {spec['name']}.host=URL"
            ) from exc
        entry = next((m for m in listed if same_model(self.model, m.model or "")), None)
        if entry is None:
            raise OllamaUnavailable(
                f"model {self.model!r} is not pulled on the Ollama server at {self.host}: "
                f"run `ollama pull {self.model}`"
            )
        info = self.client.show(self.model)
        if info.capabilities is not None and "vision" not in info.capabilities:
            raise OllamaUnavailable(
                f"{self.model!r} on {self.host} does not take images (capabilities: "
                f"{', '.join(info.capabilities)}); pick a vision model such as llava"
            )
        details = info.details
        facts = ", ".join(
            str(x)
            for x in (getattr(details, "parameter_size", None), getattr(details, "quantization_level", None))
            if x
        )
        return {
            "device": f"ollama {self.host}",
            "dtype": getattr(details, "quantization_level", None) or "server",
            "model_version": f"{entry.model}@{(entry.digest or '?')[:12]}",
            "notes": [
                TAG_SCORE_NOTE,
                f"served by Ollama at {self.host}{' (' + facts + ')' if facts else ''}; "
                f"keep_alive {self.keep_alive}; greedy (temperature 0, seed 0)",
            ],
        }

    def infer(self, images: list[DecodedImage], options: dict[str, Any]) -> list[ImageResult]:
        if self.client is None:
            raise RuntimeError("infer before load")
        prompts = prompts_to_run(options)
        settings = chat_options(options)
        stream = bool(options.get("stream", False))
        out = []
        for image in images:
            data = jpeg(image)
            runs = {task: self._chat(prompt, data, settings, stream) for task, prompt in prompts.items()}
            out.append(prompt_runs_result(runs, {**settings, "stream": stream}, 1))
        return out

    def _chat(self, prompt: str, image: bytes, settings: dict[str, Any], stream: bool) -> dict[str, Any]:
        message = {"role": "user", "content": prompt, "images": [image]}
        t0 = time.perf_counter()
        reply = self.client.chat(
            model=self.model, messages=[message], stream=stream, options=settings, keep_alive=self.keep_alive
        )
        if stream:  # NDJSON chunks: the text is their concatenation, the counts are on the last one
            text, last = "", None
            for last in reply:
                text += last.message.content or ""
        else:
            text, last = reply.message.content or "", reply
        seconds = time.perf_counter() - t0
        new = getattr(last, "eval_count", None)
        eval_s = (getattr(last, "eval_duration", None) or 0) / 1e9
        return {
            "prompt": prompt,
            "text": text,
            "prompt_tokens": getattr(last, "prompt_eval_count", None),
            "new_tokens": new,
            "seconds": round(seconds, 4),
            "tokens_per_s": round(new / eval_s, 2) if new and eval_s else None,
            "done_reason": getattr(last, "done_reason", None),
        }
