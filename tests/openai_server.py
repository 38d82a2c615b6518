"""A stand-in OpenAI-compatible server for the tests: the chat-completions API with image parts.

It is NOT a model. It follows the OpenAI API reference for what runners/adapters/openai_compat.py uses, as
vLLM, llama.cpp's server and LM Studio implement it: GET /v1/models (`{"object": "list", "data":
[{"id", "object": "model", "created", "owned_by", "root"}]}`), POST /v1/chat/completions (a user
message whose content holds a `text` part and an `image_url` part with a base64 data URL; answer
`{"id", "object": "chat.completion", "model", "system_fingerprint", "choices": [{"message",
"finish_reason"}], "usage"}`, `max_tokens` caps the words with finish_reason "length"), errors as
`{"error": {"message", "type", "code"}}`: 401 for a missing or wrong bearer key (its message quotes
the key it got, as some servers do, so the tests see the adapter redact it), 404 for an unknown model.
Its answer describes the decoded image (size, brightness), so a test can tell that the picture
arrived, at what size. Faults are scripted per chat request, in order (`faults`): "429" (with
Retry-After), "500", "503", "400" (an image over the size limit), "slow" (answers after `slow_s`),
"drop" (closes the connection without an answer). Every request is recorded, and the most chat
requests in flight at once.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

from tests.ollama_server import describe

SERVED = "stand-in-vlm"
SNAPSHOT = "stand-in-vlm-2026-01-15"  # what a hosted API reports as the model that answered


class StandInOpenAI:
    def __init__(
        self,
        models: tuple[str, ...] = (SERVED,),
        key: str | None = None,
        faults: list[str] | None = None,
        retry_after: str = "1",
        slow_s: float = 3.0,
        answer_s: float = 0.0,
    ) -> None:
        self.models = list(models)
        self.key = key
        self.faults: deque[str] = deque(faults or [])
        self.retry_after, self.slow_s, self.answer_s = retry_after, slow_s, answer_s
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StandInOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def chats(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == "/v1/chat/completions"]

    def _fault(self) -> str | None:
        with self.lock:
            return self.faults.popleft() if self.faults else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self._leave()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _error(
                self,
                code: int,
                message: str,
                kind: str,
                error_code: str | None = None,
                headers: dict[str, str] | None = None,
            ) -> None:
                self._send(
                    code, {"error": {"message": message, "type": kind, "param": None, "code": error_code}}, headers
                )

            def _authorised(self) -> bool:
                if owner.key is None:
                    return True
                got = self.headers.get("Authorization", "")
                if got == f"Bearer {owner.key}":
                    return True
                shown = got.removeprefix("Bearer ") or "(none)"
                self._error(
                    401,
                    f"Incorrect API key provided: {shown}. You can find your API key in your account settings.",
                    "invalid_request_error",
                    "invalid_api_key",
                )
                return False

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                owner.requests.append({"path": self.path, "authorization": self.headers.get("Authorization")})
                if self.path != "/v1/models":
                    return self._error(404, f"Not found: {self.path}", "not_found_error")
                if not self._authorised():
                    return None
                return self._send(
                    200,
                    {
                        "object": "list",
                        "data": [
                            {
                                "id": m,
                                "object": "model",
                                "created": 1767225600,
                                "owned_by": "stand-in",
                                "root": f"/models/{m}",
                            }
                            for m in owner.models
                        ],
                    },
                )

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                record: dict[str, Any] = {
                    "path": self.path,
                    "body": body,
                    "authorization": self.headers.get("Authorization"),
                }
                owner.requests.append(record)
                if self.path != "/v1/chat/completions":
                    return self._error(404, f"Not found: {self.path}", "not_found_error")
                if not self._authorised():
                    return None
                with owner.lock:
                    owner.in_flight += 1
                    owner.max_in_flight = max(owner.max_in_flight, owner.in_flight)
                self._counted = True
                try:
                    self._chat(body, record)
                finally:
                    self._leave()

            def _leave(self) -> None:
                """The request stops counting as in flight once its answer is ready, BEFORE it is written:
                the client may send its next request the moment it reads this one's answer, while this
                thread has yet to run another line (a race seen as 4 in flight at concurrency 3)."""
                if getattr(self, "_counted", False):
                    self._counted = False
                    with owner.lock:
                        owner.in_flight -= 1

            def _chat(self, body: dict[str, Any], record: dict[str, Any]) -> None:
                fault = owner._fault()
                record["fault"] = fault
                if fault == "drop":  # the connection closes with no answer (a proxy or server restart)
                    self.close_connection = True
                    return None
                if fault == "429":
                    return self._error(
                        429,
                        "Rate limit reached for requests",
                        "requests",
                        "rate_limit_exceeded",
                        {"Retry-After": owner.retry_after},
                    )
                if fault == "400":  # what a hosted API says of an image over its size limit
                    return self._error(
                        400,
                        "Invalid image: the image is larger than the 20 MB limit",
                        "invalid_request_error",
                        "image_too_large",
                    )
                if fault in ("500", "503"):
                    return self._error(
                        int(fault), "The server had an error while processing your request.", "server_error"
                    )
                time.sleep(owner.slow_s if fault == "slow" else owner.answer_s)
                if body.get("model") not in owner.models:
                    return self._error(
                        404,
                        f"The model `{body.get('model')}` does not exist.",
                        "invalid_request_error",
                        "model_not_found",
                    )
                [message] = body["messages"]
                text_parts = [p["text"] for p in message["content"] if p.get("type") == "text"]
                image_parts = [p["image_url"] for p in message["content"] if p.get("type") == "image_url"]
                url = image_parts[0]["url"] if image_parts else ""
                if not url.startswith("data:image/jpeg;base64,"):
                    return self._error(400, "Invalid image_url: expected a base64 data URL", "invalid_request_error")
                try:
                    data = base64.b64decode(url.split(",", 1)[1], validate=True)
                    size = Image.open(io.BytesIO(data)).size
                except (binascii.Error, OSError):
                    return self._error(400, "Invalid image data", "invalid_request_error")
                record["image_size"] = size
                record["detail"] = image_parts[0].get("detail")
                prompt = " ".join(text_parts)
                text, tags = describe(data)
                if "tags" in prompt.lower():
                    text = ", ".join(tags)
                words = text.split(" ")
                limit = body.get("max_tokens") or len(words)
                reason = "length" if limit < len(words) else "stop"
                words = words[:limit]
                prompt_tokens = 85 + len(prompt.split())  # the image counts as 85 tokens here
                return self._send(
                    200,
                    {
                        "id": f"chatcmpl-{len(owner.requests)}",
                        "object": "chat.completion",
                        "created": 1767225600,
                        "model": SNAPSHOT if owner.models == [SERVED] else body["model"],
                        "system_fingerprint": "fp_standin1",
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": reason,
                                "message": {"role": "assistant", "content": " ".join(words), "refusal": None},
                            }
                        ],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": len(words),
                            "total_tokens": prompt_tokens + len(words),
                        },
                    },
                )

        return Handler
