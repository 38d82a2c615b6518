"""A stand-in Ollama server for the tests: Ollama's documented HTTP API, answers made from the image.

It is NOT a model. It follows ollama/ollama docs/api.md for what the `llava` adapter uses:
GET /api/version, GET /api/tags (pulled models with digest), POST /api/show (details,
capabilities; 404 `{"error": "model 'x' not found"}` when not pulled), POST /api/chat (base64
images in the user message; `stream` true: NDJSON chunks, the last with `done: true` and the
counts; false: one JSON object; `options.num_predict` caps the words, done_reason "length"; 404
`{"error": "model \\"x\\" not found, try pulling it first"}` for an unknown model). Its answer
describes the decoded image (size, brightness), so a test can tell that the picture arrived, and
every request is recorded. "Server down" is a port nobody listens on (`closed_port()`).
"""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image, ImageStat

VISION = {
    "family": "llama",
    "families": ["llama", "clip"],
    "format": "gguf",
    "parameter_size": "7B",
    "quantization_level": "Q4_0",
}


def describe(image: bytes) -> tuple[str, list[str]]:
    img = Image.open(io.BytesIO(image)).convert("RGB")
    light = "bright" if sum(ImageStat.Stat(img).mean) / 3 > 110 else "dark"
    words = f"A {light} photo of {img.width} by {img.height} pixels with a wall and a window".split()
    return " ".join(words), [light, f"{img.width}x{img.height}", "wall", "window", "photo"]


class StandInOllama:
    def __init__(self, models: dict[str, str] | None = None) -> None:
        self.models = models if models is not None else {"llava:latest": "sha256:" + "ab12" * 16}
        self.requests: list[dict[str, Any]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> StandInOllama:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _known(self, name: str) -> str | None:
        full = name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"
        return full if full in self.models else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: Any, ndjson: list[Any] | None = None) -> None:
                data = (
                    "".join(json.dumps(x) + "\n" for x in ndjson) if ndjson is not None else json.dumps(body)
                ).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/x-ndjson" if ndjson is not None else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                owner.requests.append({"path": self.path})
                if self.path == "/api/version":
                    return self._send(200, {"version": "0.12.6"})
                if self.path == "/api/tags":
                    return self._send(
                        200,
                        {
                            "models": [
                                {
                                    "name": n,
                                    "model": n,
                                    "modified_at": "2026-11-01T00:00:00Z",
                                    "size": 4_700_000_000,
                                    "digest": d.removeprefix("sha256:"),
                                    "details": VISION,
                                }
                                for n, d in owner.models.items()
                            ]
                        },
                    )
                return self._send(404, {"error": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                owner.requests.append({"path": self.path, "body": body})
                name = owner._known(body.get("model", ""))
                if self.path == "/api/show":
                    if name is None:
                        return self._send(404, {"error": f"model '{body.get('model')}' not found"})
                    return self._send(
                        200,
                        {
                            "details": VISION,
                            "capabilities": ["completion", "vision"],
                            "model_info": {},
                            "modified_at": "2026-11-01T00:00:00Z",
                        },
                    )
                if self.path != "/api/chat":
                    return self._send(404, {"error": "not found"})
                if name is None:
                    return self._send(404, {"error": f'model "{body.get("model")}" not found, try pulling it first'})
                message = body["messages"][-1]
                text, tags = describe(base64.b64decode(message["images"][0]))
                if "tags" in message["content"].lower():
                    text = ", ".join(tags)
                words = text.split(" ")
                limit = (body.get("options") or {}).get("num_predict") or len(words)
                reason = "length" if limit < len(words) else "stop"
                words = words[:limit]
                counts = {
                    "done": True,
                    "done_reason": reason,
                    "total_duration": 2_000_000,
                    "prompt_eval_count": 600 + len(message["content"].split()),
                    "eval_count": len(words),
                    "eval_duration": 1_000_000 * len(words),
                }
                base = {"model": name, "created_at": "2026-12-02T00:00:00Z"}
                if body.get("stream", True):  # Ollama streams unless told not to
                    chunks = [
                        {**base, "message": {"role": "assistant", "content": w if i == 0 else " " + w}, "done": False}
                        for i, w in enumerate(words)
                    ]
                    return self._send(
                        200, None, ndjson=[*chunks, {**base, "message": {"role": "assistant", "content": ""}, **counts}]
                    )
                return self._send(200, {**base, "message": {"role": "assistant", "content": " ".join(words)}, **counts})

        return Handler


def closed_port() -> str:
    """A URL where nothing listens (the server is down)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
