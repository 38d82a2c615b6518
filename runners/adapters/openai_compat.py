"""Vision models behind any OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp's server, LM
Studio, SGLang, Ollama's /v1, hosted APIs such as OpenAI's), over HTTP.

Runs in the `slim` env (no torch). The client is httpx, already in that env (the `ollama` client is
built on it), rather than the `openai` package: one documented POST needs no SDK, and the retries,
their count, Retry-After and the per-image deadline have to be ours anyway to be recorded in `raw`.

Load options (model.toml [load]; `--option MODEL.KEY=V` overrides each, orchestrator/run/jobs.py):
    base_url        the API root, e.g. http://127.0.0.1:8000/v1 (required)
    model           the served model name; "" = model.toml's hub_id; "auto" = the one model listed
    api_key_env     the environment variable holding the key ("" = send none); the key is read
                    here only, sent only as the Authorization header, and redacted from messages
    api_key_required  true: load fails when that variable is unset (hosted APIs)
    max_pixels      photos are sent as JPEG data URLs scaled down to at most this many pixels
    concurrency     requests in flight at once (a thread pool over one infer call's images)
    max_retries     retries of one request on 429, 5xx, timeouts and dropped connections
    deadline_s      per image, every prompt and retry included: then the cell is `timeout`
    request_timeout_s  one HTTP request
    backoff_s       the first retry's wait when the server gives no Retry-After (doubled per retry, capped)
    detail          OpenAI's image `detail` ("low", "high", "auto"); absent = not sent
Load checks `GET {base_url}/models`: reachable, key accepted, model listed; each failure names its fix.
Infer sends, per image and prompt, one `POST {base_url}/chat/completions` with a text part and an
image_url part, temperature 0 and seed 0 (greedy, so runs compare), max_tokens = max_new_tokens.
Prompts, `ask`, tag lists and the judge work as for every captioner (runners/_vlm.py, runners/_merge.py).
raw records per prompt the text, token counts (the endpoint's `usage`), the served model and its
system_fingerprint, and per image the retries with what each failed attempt got.
"""

from __future__ import annotations

import base64
import email.utils
import io
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from runners._images import DecodedImage
from runners._vlm import TAG_SCORE_NOTE, prompt_runs_result, prompts_to_run
from runners.base import ImageResult, LoadResult
from schemas.protocol import LoadSpec

DEFAULT_MAX_NEW_TOKENS = 384
DEFAULT_MAX_PIXELS = 1_048_576  # ~1024 x 1024: what hosted APIs scale a photo to anyway
DEFAULT_CONCURRENCY = 4
DEFAULT_RETRIES = 4
DEFAULT_DEADLINE_S = 240.0
DEFAULT_REQUEST_TIMEOUT_S = 120.0
BACKOFF_S = 1.0  # first retry's wait, doubled per retry, capped at BACKOFF_MAX_S
BACKOFF_MAX_S = 30.0
JPEG_QUALITY = 90
LOOPBACK = ("localhost", "127.0.0.1", "::1")
# The load options: `--option MODEL.KEY=V` reaches the load only for a key the model.toml's [load] names.
LOAD_OPTIONS = (
    "base_url",
    "model",
    "api_key_env",
    "api_key_required",
    "max_pixels",
    "concurrency",
    "max_retries",
    "deadline_s",
    "request_timeout_s",
    "backoff_s",
    "detail",
)


class EndpointUnavailable(RuntimeError):
    """Load: the endpoint does not answer, refuses the key, or does not serve the model; names the fix."""


class Failed(Exception):
    """One image's request gave up: the cell's status ("error" or "timeout"), message and fix."""

    def __init__(self, status: str, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.fix = status, message, fix


class Retryable(Exception):
    """One attempt failed in a way another attempt may not (429, 5xx, timeout, dropped connection)."""

    def __init__(self, message: str, wait_s: float | None = None, timed_out: bool = False) -> None:
        super().__init__(message)
        self.wait_s, self.timed_out = wait_s, timed_out


@dataclass(frozen=True)
class Settings:
    base_url: str
    model: str
    api_key_env: str
    api_key_required: bool
    max_pixels: int
    concurrency: int
    max_retries: int
    deadline_s: float
    request_timeout_s: float
    backoff_s: float
    detail: str | None


def _number(options: dict[str, Any], key: str, default: float, minimum: float, integer: bool = False) -> Any:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int if integer else int | float) or value < minimum:
        raise ValueError(
            f"option {key} must be {'an integer' if integer else 'a number'} >= {minimum:g}, got {value!r}"
        )
    return value


def settings_of(spec: LoadSpec) -> Settings:
    options = spec["options"]
    name = spec["name"]
    base_url = str(options.get("base_url") or "").rstrip("/")
    if not base_url:
        raise EndpointUnavailable(
            f"{name} needs the endpoint's API root: `--option {name}.base_url=http://HOST:PORT/v1`"
        )
    if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).hostname:
        raise EndpointUnavailable(
            f"{name}: base_url {base_url!r} is not an http(s) URL; give the API root: "
            f"`--option {name}.base_url=http://HOST:PORT/v1`"
        )
    detail = options.get("detail")
    return Settings(
        base_url=base_url,
        model=str(options.get("model") or spec["hub_id"]),
        api_key_env=str(options.get("api_key_env") or ""),
        api_key_required=bool(options.get("api_key_required", False)),
        max_pixels=_number(options, "max_pixels", DEFAULT_MAX_PIXELS, 1024, integer=True),
        concurrency=_number(options, "concurrency", DEFAULT_CONCURRENCY, 1, integer=True),
        max_retries=_number(options, "max_retries", DEFAULT_RETRIES, 0, integer=True),
        deadline_s=float(_number(options, "deadline_s", DEFAULT_DEADLINE_S, 0.1)),
        request_timeout_s=float(_number(options, "request_timeout_s", DEFAULT_REQUEST_TIMEOUT_S, 0.1)),
        backoff_s=float(_number(options, "backoff_s", BACKOFF_S, 0)),
        detail=str(detail) if detail else None,
    )


def is_loopback(url: str) -> bool:
    """True when `url` names this machine (photos sent there do not leave it)."""
    return (urlsplit(url).hostname or "").lower() in LOOPBACK


def scaled_jpeg(image: DecodedImage, max_pixels: int) -> tuple[bytes, tuple[int, int]]:
    """The upright RGB photo, scaled down (aspect kept) to at most `max_pixels`, as JPEG bytes and its size."""
    rgb = image.rgb()
    if rgb.width * rgb.height > max_pixels:
        scale = (max_pixels / (rgb.width * rgb.height)) ** 0.5
        size = (max(1, int(rgb.width * scale)), max(1, int(rgb.height * scale)))
        rgb = rgb.resize(size, resample=3, reducing_gap=3.0)  # 3 = BICUBIC; reducing_gap: fast for 50 MP
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue(), rgb.size


def data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds: a number of seconds, or an HTTP date (RFC 9110 section 10.2.3)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def message_text(content: Any) -> str:
    """A chat message's content: a string, or (some servers) a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


class Adapter:
    def __init__(self) -> None:
        self.client: Any = None
        self.settings: Settings | None = None
        self.name = "this model"
        self.key = ""
        self.pool: ThreadPoolExecutor | None = None

    # -- secrets ---------------------------------------------------------------------------------
    def redact(self, text: str) -> str:
        """`text` with the key replaced: a server may echo it in an error body."""
        return text.replace(self.key, "[redacted]") if self.key else text

    # -- load ------------------------------------------------------------------------------------
    def load(self, spec: LoadSpec) -> LoadResult:
        import httpx

        self.name = spec["name"]
        s = self.settings = settings_of(spec)
        self.key = os.environ.get(s.api_key_env, "").strip() if s.api_key_env else ""
        if s.api_key_required and not self.key:
            raise EndpointUnavailable(
                f"{self.name} needs an API key in the environment variable {s.api_key_env}, "
                f"which is not set: `export {s.api_key_env}=...`"
            )
        headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
        self.client = httpx.Client(
            base_url=s.base_url + "/",
            headers=headers,
            timeout=httpx.Timeout(s.request_timeout_s, connect=min(10.0, s.request_timeout_s)),
            limits=httpx.Limits(max_connections=s.concurrency),
            follow_redirects=False,
        )
        self.pool = ThreadPoolExecutor(max_workers=s.concurrency, thread_name_prefix="endpoint")
        listed = self._models()
        ids = [str(m.get("id")) for m in listed if isinstance(m, dict) and m.get("id")]
        if s.model == "auto":
            if len(ids) != 1:
                raise EndpointUnavailable(
                    f"{self.name}: model 'auto' needs an endpoint serving one model; "
                    f"{s.base_url} serves {', '.join(ids) or 'none'}: "
                    f"`--option {self.name}.model=NAME`"
                )
            s = self.settings = replace(s, model=ids[0])
        entry = next((m for m in listed if isinstance(m, dict) and m.get("id") == s.model), None)
        if entry is None:
            shown = ", ".join(ids[:20]) + (" ..." if len(ids) > 20 else "")
            raise EndpointUnavailable(
                f"{s.base_url} does not serve model {s.model!r} (it lists: {shown or 'none'}): "
                f"`--option {self.name}.model=NAME` with a listed name"
            )
        root = entry.get("root")
        version = f"{s.model} ({root})" if isinstance(root, str) and root and root != s.model else s.model
        where = (
            "this machine"
            if is_loopback(s.base_url)
            else f"{urlsplit(s.base_url).hostname} (photos leave this machine)"
        )
        return {
            "device": f"endpoint {s.base_url}",
            "dtype": "server",
            "model_version": version,
            "notes": [
                TAG_SCORE_NOTE,
                f"served by an OpenAI-compatible endpoint on {where}; photos sent as JPEG at most "
                f"{s.max_pixels} px; {s.concurrency} request(s) at a time, {s.max_retries} retries "
                f"(429, 5xx, timeouts; Retry-After honoured), {s.deadline_s:g} s per image; "
                f"greedy (temperature 0, seed 0); API key: " + (f"from ${s.api_key_env}" if self.key else "none sent"),
            ],
        }

    def _models(self) -> list[Any]:
        """GET /models: the load's check that the endpoint answers, takes the key and lists models."""
        import httpx

        assert self.settings is not None
        s = self.settings
        try:
            reply = self.client.get("models")
        except httpx.HTTPError as exc:
            raise EndpointUnavailable(
                f"no OpenAI-compatible server answers at {s.base_url} ({type(exc).__name__}: {self.redact(str(exc))}); "
                f"start it (e.g. `vllm serve MODEL`) or fix `--option {self.name}.base_url=URL`"
            ) from None
        if reply.status_code in (401, 403):
            fix = (
                f"`export {s.api_key_env}=...` with a valid key"
                if s.api_key_env
                else f"name the variable holding the key: `--option {self.name}.api_key_env=VAR`"
            )
            state = "refused the API key in $" + s.api_key_env if self.key else "needs an API key"
            raise EndpointUnavailable(
                f"{s.base_url} {state} (HTTP {reply.status_code}: {self._error_text(reply)}): {fix}"
            )
        if reply.status_code == 404:
            raise EndpointUnavailable(
                f"{s.base_url}/models is not found (HTTP 404): base_url must be the API root, "
                f"usually ending in /v1: `--option {self.name}.base_url=http://HOST:PORT/v1`"
            )
        if reply.status_code != 200:
            raise EndpointUnavailable(
                f"{s.base_url}/models answered HTTP {reply.status_code} "
                f"({self._error_text(reply)}); check the server's log, then "
                f"`mltag health {self.name}`"
            )
        try:
            data = reply.json().get("data")
        except (ValueError, AttributeError):
            data = None
        if not isinstance(data, list):
            raise EndpointUnavailable(
                f"{s.base_url}/models did not answer an OpenAI model list: is it an "
                f"OpenAI-compatible API root? `--option {self.name}.base_url=URL`"
            )
        return data

    def _error_text(self, reply: Any) -> str:
        """The server's error message (OpenAI's {"error": {"message"}} or a plain body), short and redacted."""
        try:
            body = reply.json()
            error = body.get("error", body) if isinstance(body, dict) else body
            text = error.get("message", str(error)) if isinstance(error, dict) else str(error)
        except ValueError:
            text = reply.text
        return self.redact(" ".join(str(text).split()))[:300] or reply.reason_phrase

    # -- infer -----------------------------------------------------------------------------------
    def infer(self, images: list[DecodedImage], options: dict[str, Any]) -> list[ImageResult]:
        if self.client is None or self.pool is None:
            raise RuntimeError("infer before load")
        if options.get("judge"):
            return list(self.pool.map(lambda img: self._guarded(self._judge, img, options), images))
        prompts = prompts_to_run(options)
        body = self._body(options)
        # The pool bounds the requests in flight; map keeps the images' order, and every image gets a cell.
        return list(self.pool.map(lambda img: self._guarded(self._image, img, prompts, body), images))

    def _guarded(self, work: Any, image: DecodedImage, *args: Any) -> ImageResult:
        """One image's work; an unexpected failure is that image's error cell. Raising would make the host
        run each image of the batch again alone, asking the endpoint (and paying a hosted API) twice."""
        try:
            result: ImageResult = work(image, *args)
        except Exception as exc:  # noqa: BLE001 - becomes the cell, with its type
            return {
                "status": "error",
                "caption": None,
                "tags": [],
                "message": self.redact(f"{type(exc).__name__}: {exc}"),
                "raw": {},
            }
        return result

    def _body(self, options: dict[str, Any]) -> dict[str, Any]:
        """The request's generation settings: greedy, bounded; `extra_body` adds server-specific fields."""
        misplaced = sorted(set(options) & set(LOAD_OPTIONS))
        if misplaced:  # a silently ignored option would run with defaults the user thinks are changed
            raise ValueError(
                f"{', '.join(misplaced)}: load option(s) of {self.name}, which reach the load only when "
                f"envs/{self.name}/model.toml [load] names them (e.g. {misplaced[0]} = ...)"
            )
        max_new = options.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
        if isinstance(max_new, bool) or not isinstance(max_new, int) or max_new < 1:
            raise ValueError(f"option max_new_tokens must be an integer >= 1, got {max_new!r}")
        extra = options.get("extra_body") or {}
        if not isinstance(extra, dict):
            raise ValueError(f"option extra_body must be a table of request fields, got {extra!r}")
        return {"temperature": 0, "seed": 0, "max_tokens": max_new, **extra}

    def _image(self, image: DecodedImage, prompts: dict[str, str], body: dict[str, Any]) -> ImageResult:
        assert self.settings is not None
        deadline = time.monotonic() + self.settings.deadline_s
        jpeg, size = scaled_jpeg(image, self.settings.max_pixels)
        url = data_url(jpeg)
        attempts: list[dict[str, Any]] = []
        runs: dict[str, dict[str, Any]] = {}
        try:
            for task, prompt in prompts.items():
                runs[task] = self._chat(prompt, url, body, deadline, attempts, task)
        except Failed as failure:
            return self._failed(failure, attempts, runs, size, len(jpeg))
        result = prompt_runs_result(runs, body, 1)
        result["raw"].update(self._summary(runs, attempts, size, len(jpeg)))
        return result

    def _judge(self, image: DecodedImage, options: dict[str, Any]) -> ImageResult:
        """As the judge (`--judge MODEL`): the photo and the other models' outputs in one prompt, parsed as
        every judge's answer (runners/_merge.py)."""
        from runners._merge import DEFAULT_MAX_TAGS_PER_MODEL, VISION_JUDGE_PROMPT, format_outputs, merged_result

        assert self.settings is not None
        if image.pil is None:
            return {
                "status": "error",
                "caption": None,
                "tags": [],
                "raw": {"inputs": []},
                "message": "the photo could not be read for the judge (moved or unreadable since it was "
                "analysed): run `mltag judge` where the file is",
            }
        instruction = options.get("judge_prompt") or VISION_JUDGE_PROMPT
        max_tags = options.get("max_tags_per_model") or DEFAULT_MAX_TAGS_PER_MODEL
        body = self._body(options)
        prompt = f"{instruction}\n\n{format_outputs(image.context or {}, max_tags)}"
        deadline = time.monotonic() + self.settings.deadline_s
        jpeg, size = scaled_jpeg(image, self.settings.max_pixels)
        attempts: list[dict[str, Any]] = []
        try:
            run = self._chat(prompt, data_url(jpeg), body, deadline, attempts, "merge")
        except Failed as failure:
            return self._failed(failure, attempts, {}, size, len(jpeg))
        result = merged_result(image.context or {}, instruction, run, saw_image=True)
        result["raw"].update(generate=body, **self._summary({"merge": run}, attempts, size, len(jpeg)))
        return result

    def _summary(
        self, runs: dict[str, dict[str, Any]], attempts: list[dict[str, Any]], size: tuple[int, int], sent_bytes: int
    ) -> dict[str, Any]:
        usage = {k: sum(int(r.get(k) or 0) for r in runs.values()) for k in ("prompt_tokens", "completion_tokens")}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        served = sorted({str(r["served_model"]) for r in runs.values() if r.get("served_model")})
        # attempts: every failed request; retries: those another request followed
        return {
            "usage": usage,
            "retries": sum(a["waited_s"] is not None for a in attempts),
            "attempts": attempts,
            "served_model": ", ".join(served) or None,
            "sent": {"width": size[0], "height": size[1], "jpeg_bytes": sent_bytes},
        }

    def _failed(
        self,
        failure: Failed,
        attempts: list[dict[str, Any]],
        runs: dict[str, dict[str, Any]],
        size: tuple[int, int],
        sent_bytes: int,
    ) -> ImageResult:
        out: ImageResult = {
            "status": failure.status,
            "caption": None,
            "tags": [],
            "message": self.redact(failure.message),
            "raw": {"generations": runs, **self._summary(runs, attempts, size, sent_bytes)},
        }
        if failure.fix:
            out["fix"] = failure.fix
        return out

    def _chat(
        self, prompt: str, url: str, body: dict[str, Any], deadline: float, attempts: list[dict[str, Any]], task: str
    ) -> dict[str, Any]:
        """One prompt's answer, retried on 429 / 5xx / timeouts / dropped connections until max_retries or
        the image's deadline; every failed attempt is appended to `attempts`."""
        assert self.settings is not None
        s = self.settings
        image_part: dict[str, Any] = {"url": url, **({"detail": s.detail} if s.detail else {})}
        request = {
            **body,
            "model": s.model,
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": image_part}],
                }
            ],
        }
        tries = 0
        while True:
            tries += 1
            t0 = time.perf_counter()
            try:
                answer = self._post(request, deadline)
                return {"prompt": prompt, **answer, "seconds": round(time.perf_counter() - t0, 4)}
            except Retryable as exc:
                wait = exc.wait_s if exc.wait_s is not None else min(BACKOFF_MAX_S, s.backoff_s * 2 ** (tries - 1))
                wait += random.uniform(0, wait / 4) if exc.wait_s is None else 0  # jitter spreads the pool's retries
                left = deadline - time.monotonic()
                attempts.append(
                    {
                        "prompt": task,
                        "attempt": tries,
                        "error": self.redact(str(exc)),
                        "seconds": round(time.perf_counter() - t0, 4),
                        "waited_s": round(wait, 3) if tries <= s.max_retries and wait < left else None,
                    }
                )
                if tries > s.max_retries:
                    raise Failed(
                        "timeout" if exc.timed_out else "error", f"{exc}; gave up after {tries} tries", self._fix(exc)
                    ) from None
                if wait >= left:
                    asked = f" (the server asked to wait {wait:g} s)" if exc.wait_s else ""
                    raise Failed(
                        "timeout",
                        f"{exc}{asked}; no answer within the {s.deadline_s:g} s deadline per image after {tries} tries",
                        f"raise --option {self.name}.deadline_s (and --timeout above it), or lower "
                        f"--option {self.name}.concurrency",
                    ) from None
                time.sleep(wait)

    def _fix(self, exc: Retryable) -> str:
        if "429" in str(exc):
            return f"the endpoint limits the rate: lower --option {self.name}.concurrency, or raise max_retries"
        if exc.timed_out:
            return f"the endpoint is slow: raise --option {self.name}.request_timeout_s and deadline_s"
        return f"check the endpoint's log; `mltag health {self.name}`"

    def _post(self, request: dict[str, Any], deadline: float) -> dict[str, Any]:
        """One POST /chat/completions: the answer's fields, or Retryable / Failed."""
        import httpx

        assert self.settings is not None
        left = deadline - time.monotonic()
        if left <= 0:
            raise Retryable("the deadline passed", wait_s=0.0, timed_out=True)
        try:
            reply = self.client.post(
                "chat/completions",
                json=request,
                timeout=httpx.Timeout(min(self.settings.request_timeout_s, left), connect=min(10.0, left)),
            )
        except httpx.TimeoutException as exc:
            raise Retryable(f"no answer in time ({type(exc).__name__})", timed_out=True) from None
        except httpx.TransportError as exc:  # refused, reset, dropped mid-answer
            raise Retryable(f"connection failed ({type(exc).__name__}: {self.redact(str(exc))})") from None
        code = reply.status_code
        if code == 429 or code >= 500:
            raise Retryable(f"HTTP {code}: {self._error_text(reply)}", retry_after_s(reply.headers.get("retry-after")))
        if code in (401, 403):
            var = self.settings.api_key_env
            raise Failed(
                "error",
                f"the endpoint refused the API key (HTTP {code}: {self._error_text(reply)})",
                f"export {var}=... with a valid key"
                if var
                else f"--option {self.name}.api_key_env=VAR naming the variable holding the key",
            )
        if code != 200:  # 400 (image too large, no vision), 404 (model gone): another try gives the same
            raise Failed(
                "error",
                f"HTTP {code}: {self._error_text(reply)}",
                f"`mltag health {self.name}`; a 400 about the image: lower --option {self.name}.max_pixels",
            )
        try:
            data = reply.json()
            choice = data["choices"][0]
        except (ValueError, KeyError, IndexError, TypeError):
            raise Retryable("the answer was not a chat completion (truncated or malformed JSON)") from None
        message = choice.get("message") or {}
        usage = data.get("usage") or {}
        return {
            "text": message_text(message.get("content")),
            "prompt_tokens": usage.get("prompt_tokens"),
            "new_tokens": usage.get("completion_tokens"),
            "completion_tokens": usage.get("completion_tokens"),
            "finish_reason": choice.get("finish_reason"),
            "refusal": message.get("refusal"),
            "served_model": data.get("model"),
            "system_fingerprint": data.get("system_fingerprint"),
            "response_id": data.get("id"),
        }
