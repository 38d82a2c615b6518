"""What every judge shares (runners/adapters/judge.py's text LLM, and any captioner judging with the photo,
runners/_vlm.py): the prompt block of the models' outputs, the answer's format, and the check of
its tags against what the models said.

Answer format, parsed here:
    DESCRIPTION: <merged description>
    TAGS: <comma-separated tags>
"""

from __future__ import annotations

import re
from typing import Any

from runners._text import caption_words, looks_degenerate, parse_tag_list
from runners.base import ImageResult
from schemas.protocol import Tag

# The vision judge (any captioner used as --judge): it sees the photo, so it may confirm, correct
# and add; what it adds beyond the models is kept and listed in raw.added_tags.
VISION_JUDGE_PROMPT = (
    "You see a photo and what several image models said about it (below). Write one description and one tag "
    "list for this photo: keep what the photo confirms, leave out what it contradicts, and add only what you "
    "clearly see. Answer in exactly this format:\n"
    "DESCRIPTION: <two to four factual sentences>\n"
    "TAGS: <comma-separated short tags>"
)
DEFAULT_MAX_TAGS_PER_MODEL = 30
# "DESCRIPTION:", "**Tags:**", "Tags**:": markdown emphasis around the field name is common.
_FIELD = re.compile(r"^\s*\**\s*(DESCRIPTION|TAGS)\s*\**\s*:\s*\**\s*", re.IGNORECASE | re.MULTILINE)


def format_outputs(context: dict[str, Any], max_tags: int = DEFAULT_MAX_TAGS_PER_MODEL) -> str:
    """The user message: each model's caption and tags (best first), one block per model."""
    blocks = []
    for out in context.get("outputs", []):
        lines = [f"[{out['model']}, {out.get('kind', 'model')}]"]
        if out.get("caption"):
            lines.append(f"caption: {' '.join(str(out['caption']).split())}")
        if out.get("tags"):
            lines.append("tags: " + ", ".join(str(t) for t in out["tags"][:max_tags]))
        blocks.append("\n".join(lines))
    return "Model outputs for one photo:\n\n" + "\n\n".join(blocks)


def parse_answer(text: str) -> tuple[str | None, str | None]:
    """(description, tag list text) from `DESCRIPTION: ... TAGS: ...`; a missing field is None."""
    parts = _FIELD.split(text)
    fields: dict[str, str] = {}
    for name, value in zip(parts[1::2], parts[2::2], strict=False):
        fields.setdefault(name.upper(), value.strip())
    return fields.get("DESCRIPTION") or None, fields.get("TAGS") or None


def _key(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def evidence(context: dict[str, Any]) -> set[str]:
    """Every word the models used (captions and tags), in a crude singular form."""
    words: set[str] = set()
    for out in context.get("outputs", []):
        text = " ".join([str(out.get("caption") or "")] + [str(t) for t in out.get("tags") or []])
        words.update(_key(w) for w in caption_words(text.replace("_", " ")))
    return words


def split_supported(tags: list[Tag], seen: set[str]) -> tuple[list[Tag], list[str]]:
    """Tags with at least one content word some model used, and the names of the others."""
    kept: list[Tag] = []
    invented: list[Tag] = []
    for tag in tags:
        words = [_key(w) for w in caption_words(tag["name"].replace("_", " "))]
        (kept if any(w in seen for w in words) else invented).append(tag)
    return kept, [t["name"] for t in invented]


def merged_result(
    context: dict[str, Any], system_prompt: str, run: dict[str, Any], saw_image: bool = False
) -> ImageResult:
    """One image's merged result from the answer `run` (a GenerativeAdapter.generate() item).

    A text-only judge never saw the photo: a tag no model mentioned is invented, and dropped. A
    judge that saw it (`saw_image`) may add what it sees: such tags are kept, listed in raw.added_tags."""
    text = run["text"]
    raw: dict[str, Any] = {
        "generations": {"merge": run},
        "system_prompt": system_prompt,
        "inputs": [o["model"] for o in context.get("outputs", [])],
        "unsupported_tags": [],
        "saw_image": saw_image,
    }
    description, tag_text = parse_answer(text)
    if description is None and tag_text is None:
        description = text  # no format followed: the whole answer is the description
    problems = []
    reason = looks_degenerate(description) if description is not None else "no DESCRIPTION in the answer"
    if reason:
        problems.append(f"description: {reason}")
        description = None
    tags: list[Tag] = []
    degenerate = looks_degenerate(tag_text) if tag_text is not None else None
    if tag_text is not None and degenerate is None:
        parsed = parse_tag_list(tag_text)
        tags, unsupported = split_supported(parsed, evidence(context))
        if saw_image:
            tags, raw["added_tags"] = parsed, unsupported
        else:
            raw["unsupported_tags"] = unsupported
        for tag in tags:
            tag["category"] = "judge"
        if raw["unsupported_tags"]:
            problems.append(f"dropped {len(raw['unsupported_tags'])} tag(s) no model mentioned")
    else:
        problems.append("tags: " + ("no TAGS line in the answer" if degenerate is None else degenerate))
    result: ImageResult = {
        "status": "ok" if description or tags else "no_tags",
        "caption": description,
        "tags": tags,
        "raw": raw,
    }
    if problems:
        result["message"] = "; ".join(problems) + "; raw.generations.merge has the answer"
    return result
