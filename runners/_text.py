"""Checks on generated text that every captioning adapter can share (stdlib only).

Generative models fail quietly: beam search can emit nothing, only special tokens, or loop on
one phrase until max_new_tokens. Such output must reach the user as `no_tags` with a reason,
never as a caption.
"""

from __future__ import annotations

import re

from schemas.protocol import Tag

# Special tokens and region markup (<loc_12>, <pad>, </s>) carry no words.
_MARKUP = re.compile(r"<[^<>\s]{1,40}>")
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")

MAX_GRAM = 8  # longest repeated unit looked for, in words
MOSTLY = 0.4  # a loop covering this share of the words makes the caption repetitive
MIN_REPEATS = 3  # "very very good" is style; three in a row is a loop
TAIL_REPEATS = 4  # a loop still running at the end: generation stuck until the token limit
TAIL_MIN_WORDS = 8
LOW_DIVERSITY = 0.3  # distinct / total words, for captions of at least DIVERSITY_MIN_WORDS
DIVERSITY_MIN_WORDS = 20


def caption_words(text: str) -> list[str]:
    """Lower-cased words of a caption, markup removed."""
    return _WORD.findall(_MARKUP.sub(" ", text).lower())


def longest_loop(words: list[str], max_gram: int = MAX_GRAM) -> tuple[tuple[str, ...], int, int]:
    """The consecutive repetition covering most words: (unit, repeats, end index); ((), 0, 0) if none."""
    best: tuple[tuple[str, ...], int, int] = ((), 0, 0)
    for n in range(1, max_gram + 1):
        i = 0
        while i + 2 * n <= len(words):
            unit, repeats = words[i : i + n], 1
            while words[i + repeats * n : i + (repeats + 1) * n] == unit:
                repeats += 1
            if repeats > 1 and repeats * n > best[1] * len(best[0]):
                best = (tuple(unit), repeats, i + repeats * n)
            i += (repeats - 1) * n + 1 if repeats > 1 else 1
    return best


def looks_degenerate(text: str | None) -> str | None:
    """Why `text` is not a usable caption (empty, only markup, or mostly repetition), else None."""
    if text is None or not text.strip():
        return "empty caption"
    words = caption_words(text)
    if not words:
        return "no words in the caption (only special tokens, markup or symbols)"
    unit, repeats, end = longest_loop(words)
    covered = repeats * len(unit)
    shown = " ".join(unit)
    if repeats >= MIN_REPEATS and covered >= MOSTLY * len(words):
        return f"repetitive caption: {shown!r} repeated {repeats} times ({covered} of {len(words)} words)"
    if repeats >= TAIL_REPEATS and covered >= TAIL_MIN_WORDS and end == len(words):
        return f"caption ends in a loop: {shown!r} repeated {repeats} times until generation stopped"
    distinct = len(set(words))
    if len(words) >= DIVERSITY_MIN_WORDS and distinct < LOW_DIVERSITY * len(words):
        return f"repetitive caption: only {distinct} distinct words out of {len(words)}"
    return None


# -- tag lists (a VLM asked for tags, a judge's TAGS line) ----------------------------------------
MAX_TAGS = 100
TAG_MAX_WORDS = 6
# A tag item: bullets, numbering and quotes around it are list syntax, not part of the tag.
_ITEM_EDGES = re.compile(r"^[\s\-*•·#]*(?:\d+[.)]\s+)?[\"'`]*|[\"'`.!]*\s*$")
_LIST_LABEL = re.compile(r"^\s*tags?\s*:", re.IGNORECASE)
_ITEM_SPLIT = re.compile(r"[,;\n|]+")


def parse_tag_list(text: str) -> list[Tag]:
    """A comma-separated (or bulleted) tag list -> tags, in the model's order, with estimated scores.

    Items are lower-cased, stripped of bullets, numbering, quotes and a final period; items
    without a letter or longer than TAG_MAX_WORDS words (a sentence, not a tag) are dropped, and
    repeats keep their first position. Score: 0.9 - 0.4 x position / count (first 0.9, last > 0.5).
    """
    names: list[str] = []
    for item in _ITEM_SPLIT.split(text):
        name = " ".join(_ITEM_EDGES.sub("", _LIST_LABEL.sub("", item)).lower().split())
        if (
            name
            and any(ch.isalpha() for ch in name)
            and len(name.split()) <= TAG_MAX_WORDS
            and not {"<", ">"} & set(name)
            and name not in names
        ):
            names.append(name)
    names = names[:MAX_TAGS]
    return [
        {"name": n, "score": round(0.9 - 0.4 * i / len(names), 4), "category": "vlm", "estimated": True}
        for i, n in enumerate(names)
    ]
