"""Captions -> tags, the same way for every captioning model (stdlib only: runs in the orchestrator).

A caption is free text; to compare it with taggers it becomes a list of tags:

1. Known phrases (the urbex vocabulary: "peeling paint", "broken window", "black and white") are
   matched first, case-insensitively, longest first, inside one clause (never across . , ; : ! ?),
   each word compared in a simple singular form, so "broken windows" is the tag "broken window" and
   "pipe" is the vocabulary's "pipes". A matched phrase is kept whole, under its vocabulary spelling.
2. Every other word (a Danbooru-style "no_humans" or "brick_wall" counts as one word, kept whole) is
   lower-cased and kept unless it is a stopword (function words and caption
   filler such as "image", "shows", "background", see data/stopwords.txt), shorter than 3
   characters, or a number. Singular and plural forms count as one tag, named by the form the
   caption uses most.

Scores are ESTIMATES of salience, not model probabilities (every tag has estimated=True):

    score = 0.5 * (1 - first_position / caption_words) + 0.5 * (1 - 0.5 ** mentions)

where first_position is the index of the tag's first word among all the caption's words
(stopwords included). Captions name the main subject first, and what they repeat matters, so a
tag's score grows with both. A single mention scores in (0.25, 0.75], the first word 0.75; each
further mention halves the distance to the cap. Always in (0, 1); ordered by score, then
by first position, then name.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.document import Cell, Tag
from orchestrator.paths import DATA_DIR, read_vocabulary

STOPWORDS_FILE = DATA_DIR / "stopwords.txt"
MIN_WORD_CHARS = 3

# Clause breaks: a phrase never spans one ("the window. Broken glass" holds no "window broken").
_CLAUSE_BREAK = re.compile(r"[.,;:!?()\[\]{}\"/|…]+")
# A word: letters/digits, with inner apostrophes, hyphens or underscores ("mid-century", "building's",
# and Danbooru-style tags such as "no_humans" or "brick_wall", which booru captioners and WD14 write
# as one tag: never split into words).
_WORD = re.compile(r"[^\W_]+(?:['_-][^\W_]+)*")
_ORDINAL = re.compile(r"\d+(?:st|nd|rd|th)?")
_TYPOGRAPHY = str.maketrans({"\u2019": "'", "\u2018": "'", "\u2010": "-", "\u2011": "-"})


def load_stopwords(path: Path = STOPWORDS_FILE) -> frozenset[str]:
    """The stoplist: one word per line, `#` comments and blank lines ignored, lower-cased."""
    return _read_stopwords(path)


@functools.lru_cache(maxsize=4)
def _read_stopwords(path: Path) -> frozenset[str]:
    words = (line.split("#", 1)[0].strip().lower() for line in path.read_text(encoding="utf-8").splitlines())
    return frozenset(w for w in words if w)


def singular(word: str) -> str:
    """A crude singular form, used only as a matching key (never shown): windows -> window."""
    if len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@dataclass
class _Word:
    surface: str  # lower-cased, as written (possessive 's removed)
    key: str  # singular form
    index: int  # position among all the caption's words


def _words(text: str, start: int = 0) -> list[_Word]:
    out = []
    for i, match in enumerate(_WORD.finditer(text.translate(_TYPOGRAPHY).lower())):
        surface = match.group()
        if surface.endswith("'s"):
            surface = surface[:-2]
        out.append(_Word(surface, singular(surface), start + i))
    return out


def _clauses(caption: str) -> list[list[_Word]]:
    clauses, count = [], 0
    for part in _CLAUSE_BREAK.split(caption):
        words = _words(part, count)
        count += len(words)
        if words:
            clauses.append(words)
    return clauses


@functools.lru_cache(maxsize=8)  # the same vocabulary for every caption of a folder: index it once
def _phrase_index(phrases: tuple[str, ...]) -> dict[str, list[tuple[tuple[str, ...], str]]]:
    """First word's key -> [(keys of the phrase's words, phrase)], longest first; first spelling wins.
    Read-only for its callers (it is shared)."""
    index: dict[str, list[tuple[tuple[str, ...], str]]] = {}
    seen: set[tuple[str, ...]] = set()
    for phrase in phrases:
        keys = tuple(w.key for w in _words(phrase))
        if keys and keys not in seen:
            seen.add(keys)
            index.setdefault(keys[0], []).append((keys, phrase.strip()))
    for candidates in index.values():
        candidates.sort(key=lambda c: -len(c[0]))
    return index


def _keep_word(word: _Word, stopwords: frozenset[str]) -> bool:
    if len(word.surface) < MIN_WORD_CHARS or _ORDINAL.fullmatch(word.surface):
        return False
    if not any(ch.isalpha() for ch in word.surface):
        return False
    return word.surface not in stopwords and word.key not in stopwords


@dataclass
class _Tag:
    first: int
    mentions: int = 0
    surfaces: dict[str, int] = field(default_factory=dict)  # spelling -> count, in first-seen order

    def add(self, surface: str) -> None:
        self.mentions += 1
        self.surfaces[surface] = self.surfaces.get(surface, 0) + 1

    def name(self) -> str:
        return max(self.surfaces, key=lambda s: self.surfaces[s])  # ties: the first spelling seen


def _collect(caption: str, phrases: list[str], stopwords: frozenset[str]) -> tuple[dict[tuple[str, str], _Tag], int]:
    index = _phrase_index(tuple(phrases))
    found: dict[tuple[str, str], _Tag] = {}
    total = 0
    for clause in _clauses(caption):
        total = clause[-1].index + 1
        keys = [w.key for w in clause]
        i = 0
        while i < len(clause):
            match = next(((k, p) for k, p in index.get(keys[i], []) if tuple(keys[i : i + len(k)]) == k), None)
            if match:
                keys_, phrase = match
                found.setdefault(("phrase", phrase), _Tag(clause[i].index)).add(phrase)
                i += len(keys_)
                continue
            word = clause[i]
            if _keep_word(word, stopwords):
                found.setdefault(("word", word.key), _Tag(word.index)).add(word.surface)
            i += 1
    return found, total


def score(first_position: int, mentions: int, caption_words: int) -> float:
    """The salience estimate of the module docstring, in (0, 1)."""
    return 0.5 * (1 - first_position / caption_words) + 0.5 * (1 - 0.5**mentions)


def extract_tags(caption: str, phrases: list[str], stopwords: frozenset[str] | None = None) -> list[Tag]:
    """Tags of a caption: [{"name", "score", "estimated": True, "category": "caption"}], best first.

    `phrases` are multi-word (or single-word) terms kept whole; `stopwords` defaults to
    data/stopwords.txt. Deterministic; no two tags share a name; [] for an empty caption.
    """
    if not caption or not caption.strip():
        return []
    stop = load_stopwords() if stopwords is None else stopwords
    found, total = _collect(caption, phrases, stop)
    best: dict[str, tuple[float, int]] = {}
    for tag in found.values():
        name, value = tag.name(), score(tag.first, tag.mentions, total)
        if name not in best or (value, -tag.first) > (best[name][0], -best[name][1]):
            best[name] = (value, tag.first)
    ordered = sorted(best.items(), key=lambda item: (-item[1][0], item[1][1], item[0]))
    return [
        {"name": name, "score": round(value, 4), "estimated": True, "category": "caption"}
        for name, (value, _) in ordered
    ]


def caption_tags(caption: str) -> list[Tag]:
    """The tags documents show for a caption (marked estimated): the urbex phrases kept whole."""
    return extract_tags(caption, _urbex_phrases(), load_stopwords())


def finish_cell(kind: str, result: Cell) -> Cell:
    """A cell as documents show it: for a captioner, the tags extracted from its caption are added
    (marked estimated); `tag_count` counts the cell's content tags (rating tags left out). The store
    keeps the cell as the runner gave it."""
    caption = result.get("caption")
    if kind == "captioner" and caption:
        extracted = caption_tags(caption)
        have = {t["name"] for t in result.get("tags", [])}
        result["tags"] = list(result.get("tags", [])) + [t for t in extracted if t["name"] not in have]
    if "status" in result:
        result["tag_count"] = sum(1 for t in result.get("tags") or [] if t.get("category") != "rating")
    return result


@functools.cache
def _urbex_phrases() -> list[str]:
    return read_vocabulary("urbex", Path("."))
