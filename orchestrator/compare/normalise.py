"""Tag normalisation, for comparison only: the raw tags stay stored exactly as the models gave them.

    "Broken_Windows" -> "broken window"     "no-humans" -> "no human"     "rusted" -> "rusted"

Steps, in order:

1. Unicode NFKC and case folding; `_` and `-` read as spaces; whitespace collapsed and trimmed.
2. The LAST word (the head noun of "broken windows", "peeling paint") is reduced to its singular
   when it is a plural noun; every other word is left as written, so adjectives and participles
   keep their meaning ("rust", "rusted", "rusty" stay three tags). A word counts as a plural
   noun only when two independent libraries agree: simplemma's dictionary says it is an
   inflected form (not a headword, so "bus", "canvas", "lens" stay), inflect gives its singular
   noun (so verb forms such as "rusted", "peeling" stay), and that singular is a word the
   dictionary knows (so "indices" never becomes "indice"). Mass nouns and Latin plurals that are
   headwords ("graffiti", "data", "media", "debris") therefore stay.
3. A few nouns whose plural means something else stay plural (PLURAL_ONLY): "glasses" is
   eyewear (a Danbooru/WD14 tag), "glass" the material (an urbex tag: "broken glass").
4. The user's synonym map, if any (`--synonyms FILE`), applied once to the result of 1-3.

Both libraries are pure Python and work offline (their dictionaries ship in the wheel).
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from pathlib import Path
from typing import Any

from orchestrator.errors import SynonymError

DEFINITION = (
    "tags are compared after normalisation (raw tags stay as given): Unicode NFKC + lower case, "
    "'_' and '-' read as spaces, whitespace collapsed; the last word singularised when it is a plural "
    "noun (windows -> window; rust / rusted / rusty stay distinct; graffiti and glasses stay); "
    "then the synonym map, if one is given"
)

PLURAL_ONLY = frozenset({"glasses", "sunglasses", "eyeglasses", "shorts", "goods"})

_SEPARATORS = re.compile(r"[\s_\-]+")


_IMPORT_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _inflector() -> Any:
    """inflect's engine, imported without typeguard's run-time type checks: inflect decorates ~100
    functions with `typeguard.typechecked` at import, which re-compiles each of them (2.3 s of a
    2.4 s import here, paid by every `mltag report`). Only str is ever passed, so the checks can
    never fire; the decorator is swapped for a pass-through just for that import (0.1 s)."""
    import typeguard

    with _IMPORT_LOCK:
        checked = typeguard.typechecked
        typeguard.typechecked = _unchecked  # same call shapes, no checks
        try:
            import inflect
        finally:
            typeguard.typechecked = checked
    return inflect.engine()


def _unchecked(target: Any = None, **_: Any) -> Any:
    """`typechecked` that checks nothing: `@typechecked` and `@typechecked(...)` both return the function."""
    return target if target is not None else (lambda function: function)


@functools.lru_cache(maxsize=65536)
def singular(word: str) -> str:
    """`word` (lower case) as a singular noun when it is a plural noun, else `word` unchanged."""
    if word in PLURAL_ONLY or len(word) < 3 or not word.isalpha():
        return word
    import simplemma  # ~0.15 s with its dictionary: only for a word that may be a plural noun

    if simplemma.lemmatize(word, lang="en") == word:
        return word  # a headword: "bus", "graffiti", "rusty"
    single = _inflector().singular_noun(word)  # the singular, or False for a word that is not a plural
    if isinstance(single, str) and single and single != word and simplemma.is_known(single, lang="en"):
        return single
    return word


@functools.lru_cache(maxsize=65536)
def clean(tag: str) -> str:
    """Steps 1-3 of the module docstring (no synonyms)."""
    words = _SEPARATORS.sub(" ", unicodedata.normalize("NFKC", tag).casefold()).strip().split(" ")
    if words[-1]:
        words[-1] = singular(words[-1])
    return " ".join(words)


class Normaliser:
    """Callable: raw tag -> the name it is compared under. Synonyms are normalised on both sides.

    Answers are remembered (a folder repeats the same few thousand tag names in every image); the
    memo is emptied when it reaches MEMO_LIMIT names, so open-vocabulary captions cannot grow it."""

    MEMO_LIMIT = 200_000

    def __init__(self, synonyms: dict[str, str] | None = None) -> None:
        self._memo: dict[str, str] = {}
        self.synonyms: dict[str, str] = {}
        for raw, target in (synonyms or {}).items():
            key, name = clean(raw), clean(target)
            if key and name and self.synonyms.setdefault(key, name) != name:
                raise SynonymError(
                    f"synonyms {raw!r} and another tag both normalise to {key!r} but map to "
                    f"different names ({self.synonyms[key]!r}, {name!r}); keep one"
                )

    def __call__(self, tag: str) -> str:
        known = self._memo.get(tag)
        if known is not None:
            return known
        if len(self._memo) >= self.MEMO_LIMIT:
            self._memo.clear()
        name = clean(tag)
        name = self._memo[tag] = self.synonyms.get(name, name)
        return name


def parse_synonyms(text: str, source: str = "synonyms") -> dict[str, str]:
    """`derelict = abandoned` lines (`a, b = c` maps several), `#` comments, blank lines ignored.

    The left side is what a model said, the right side the name it is compared under. A tag mapped
    twice to different names is an error, so a file never depends on the order of its lines.
    """
    out: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        left, sep, right = body.partition("=")
        sources = [s.strip() for s in left.split(",") if s.strip()]
        if not sep or not sources or not right.strip() or "=" in right:
            raise SynonymError(
                f"{source}:{number}: expected 'tag = name' (e.g. 'derelict = abandoned'), got {line.strip()!r}"
            )
        for tag in sources:
            if tag in out and out[tag] != right.strip():
                raise SynonymError(
                    f"{source}:{number}: {tag!r} is already mapped to {out[tag]!r}; keep one of the two lines"
                )
            out[tag] = right.strip()
    return out


def load_synonyms(path: Path) -> dict[str, str]:
    """Read a synonym file (see parse_synonyms); a missing file is a SynonymError naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SynonymError(f"cannot read the synonym file {path}: {exc.strerror or exc}") from exc
    return parse_synonyms(text, str(path))
