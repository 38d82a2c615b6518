"""The ollama adapter (llava, minicpm-v45-ollama) through the real runner host, against a stand-in
Ollama server (tests/ollama_server.py) that follows Ollama's documented API: streaming and
non-streaming chat, pulled-model listing, and its error replies. The server is not a model: its
answer describes the image it received, which is what lets these tests see the picture arrive.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.errors import RunnerError
from tests.ollama_server import StandInOllama, closed_port
from tests.support import SAMPLES

pytestmark = pytest.mark.adapter


def _chats(server: StandInOllama) -> list[dict]:
    return [r["body"] for r in server.requests if r["path"] == "/api/chat"]


@pytest.mark.parametrize("stream", [False, True])
def test_caption_and_tags_over_chat(run_model, monkeypatch: pytest.MonkeyPatch, stream: bool) -> None:
    paths = [SAMPLES / "chelsea.png", SAMPLES / "rocket.jpg"]
    with StandInOllama() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url)  # as a user sets it
        load, cells = run_model("llava", paths, ask="both", stream=stream)
    assert load["model_version"] == "llava:latest@" + "ab12" * 3
    assert load["device"] == f"ollama {server.url}" and load["dtype"] == "Q4_0"
    for cell, path in zip(cells, paths, strict=True):
        width, height = Image.open(path).size
        assert cell["status"] == "ok", cell.get("message")
        assert f"{width} by {height} pixels" in cell["caption"]  # the image arrived, decoded
        assert [t["name"] for t in cell["tags"]][1] == f"{width}x{height}"
        assert all(t["estimated"] and t["category"] == "vlm" for t in cell["tags"])
        run = cell["raw"]["generations"]["caption"]
        assert run["new_tokens"] == len(run["text"].split()) and run["prompt_tokens"] > 600
        assert run["done_reason"] == "stop" and cell["raw"]["generate"]["stream"] is stream
    chats = _chats(server)
    assert len(chats) == 4 and all(c["stream"] is stream for c in chats)
    for chat in chats:  # Ollama's documented request: base64 JPEG in the user message, greedy, keep_alive
        assert chat["model"] == "llava" and chat["keep_alive"] == "30m"
        assert chat["options"]["temperature"] == 0 and chat["options"]["num_predict"] == 384
        image = Image.open(io.BytesIO(base64.b64decode(chat["messages"][0]["images"][0])))
        assert image.format == "JPEG" and image.mode == "RGB"


def test_option_host_num_predict_and_other_model(run_model) -> None:
    with StandInOllama({"openbmb/minicpm-v4.5:latest": "sha256:" + "cd34" * 16}) as server:
        load, [cell] = run_model(
            "minicpm-v45-ollama", [SAMPLES / "coffee.png"], load_options={"host": server.url}, max_new_tokens=3
        )
    assert load["model_version"].startswith("openbmb/minicpm-v4.5:latest@cd34")
    run = cell["raw"]["generations"]["caption"]
    assert run["new_tokens"] == 3 and run["done_reason"] == "length"
    assert _chats(server)[0]["options"]["num_predict"] == 3


def test_model_not_pulled_names_the_pull_command(run_model) -> None:
    with (
        StandInOllama({"moondream:latest": "sha256:" + "ef" * 32}) as server,
        pytest.raises(RunnerError, match=r"not pulled .* run `ollama pull llava`"),
    ):
        run_model("llava", [SAMPLES / "coffee.png"], load_options={"host": server.url})


def test_server_down_says_how_to_start_it(run_model) -> None:
    with pytest.raises(RunnerError, match=r"no Ollama server answers at .*`ollama serve`"):
        run_model("llava", [SAMPLES / "coffee.png"], load_options={"host": closed_port()})


def test_model_removed_after_load_is_an_error_cell(run_model, tmp_path: Path) -> None:
    """Ollama's 404 on /api/chat (model deleted while mltag runs) becomes an error cell with its message."""
    server = StandInOllama()
    with server:
        server.models.clear()
        server.models["llava:latest"] = "sha256:" + "ab12" * 16
        # the adapter lists then shows, then chats: drop the model between load and infer
        original = server._known
        calls = {"n": 0}

        def known(name: str) -> str | None:
            calls["n"] += 1
            return original(name) if calls["n"] <= 1 else None

        server._known = known  # type: ignore[method-assign]
        _, [cell] = run_model("llava", [SAMPLES / "coffee.png"], load_options={"host": server.url})
    assert cell["status"] == "error" and "not found, try pulling it first" in cell["message"]
