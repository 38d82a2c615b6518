"""What every captioning VLM's cell must satisfy (runners/_vlm.py's contract), for the adapter tests.

Each family's test adds its own facts (image-token counts, tiling, prefixes) on top of
`check_cell`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from schemas.status import SUCCESS

RUN_FIELDS = {"prompt", "text", "prompt_tokens", "new_tokens", "seconds", "tokens_per_s"}
TAG_FIELDS = {"name", "score", "category", "estimated"}


def check_cell(
    cell: dict,
    path: Path,
    prompts: Mapping[str, str] | Iterable[str],
    *,
    new_tokens: int | None = None,
    max_new: int | None = None,
    batch_size: int | None = None,
    min_prompt_tokens: int = 1,
    hidden: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Check one cell; return its raw output for the family's own checks.

    prompts       the prompt runs expected: {task: exact prompt given to the model} or the tasks
    new_tokens    the exact count of new tokens (min_new_tokens = max_new_tokens), or
    max_new       the bound on it (then 1 <= new_tokens <= max_new)
    hidden        markup that must never reach a decoded text (image tokens, chat markers)
    """
    width, height = Image.open(path).size
    assert cell["status"] in SUCCESS, cell.get("message")
    assert cell["image"]["width"] == width and cell["image"]["height"] == height
    raw = cell["raw"]
    tasks = set(prompts)
    assert set(raw["generations"]) == tasks
    assert raw["generate"]["do_sample"] is False
    if new_tokens or max_new:
        assert raw["generate"]["max_new_tokens"] == (new_tokens or max_new)
    if batch_size is not None:
        assert raw["batch_size"] == batch_size
    for task, run in raw["generations"].items():
        assert set(run) == RUN_FIELDS
        if isinstance(prompts, Mapping):
            assert run["prompt"] == prompts[task]
        assert isinstance(run["text"], str) and not any(mark in run["text"] for mark in hidden)
        assert isinstance(run["prompt_tokens"], int) and run["prompt_tokens"] >= min_prompt_tokens
        if new_tokens:
            assert run["new_tokens"] == new_tokens
        else:
            assert isinstance(run["new_tokens"], int) and 1 <= run["new_tokens"] <= (max_new or run["new_tokens"])
        assert run["seconds"] > 0 and run["tokens_per_s"] > 0
    if cell["caption"] is not None:  # passed on exactly as generated, stripped
        assert "caption" in tasks and cell["caption"] == raw["generations"]["caption"]["text"].strip()
    for tag in cell["tags"]:
        assert set(tag) == TAG_FIELDS and tag["category"] == "vlm" and tag["estimated"] is True
        assert 0.5 < tag["score"] <= 0.9 and tag["name"] in raw["generations"]["tags"]["text"].lower()
    if cell["status"] == "no_tags":
        assert cell["caption"] is None and cell["tags"] == [] and cell["message"]
    else:
        assert cell["caption"] or cell["tags"]
    return raw


def runs(cells: list[dict], key: str, task: str = "caption") -> list[Any]:
    """`key` ("text", "prompt_tokens", ...) of each cell's `task` generation, in cell order."""
    return [c["raw"]["generations"][task][key] for c in cells]


def rgba_image(tmp_path: Path) -> Path:
    """A half-transparent RGBA photo (120 x 90): the adapters must flatten it, not fail."""
    img = Image.merge("RGBA", [Image.linear_gradient("L").resize((120, 90))] * 3 + [Image.new("L", (120, 90), 128)])
    img.save(tmp_path / "half-transparent.png")
    return tmp_path / "half-transparent.png"
