"""Tag normalisation for the comparison (orchestrator/compare/normalise.py): real simplemma + inflect."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.compare.normalise import Normaliser, clean, load_synonyms, parse_synonyms
from orchestrator.errors import SynonymError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Window", "window"),
        ("WINDOWS", "window"),
        ("Broken_Windows", "broken window"),  # multi-word: only the head noun is singularised
        ("broken-windows", "broken window"),
        ("  peeling \t paint ", "peeling paint"),
        ("no_humans", "no human"),
        ("shelves", "shelf"),
        ("skies", "sky"),
        ("buses", "bus"),
        ("men", "man"),
    ],
)
def test_case_separators_whitespace_and_plural_nouns(raw: str, expected: str) -> None:
    assert clean(raw) == expected


def test_rust_rusted_rusty_stay_distinct() -> None:
    # simplemma alone would turn "rusted" into "rust": inflect finds no plural noun there, so it stays.
    assert [clean(w) for w in ("rust", "rusted", "rusty", "rusting", "rusts")] == [
        "rust",
        "rusted",
        "rusty",
        "rusting",
        "rust",
    ]
    assert clean("abandoned") == "abandoned" and clean("broken") == "broken" and clean("peeling") == "peeling"


def test_adjectives_and_participles_in_phrases_are_left_alone() -> None:
    assert clean("abandoned buildings") == "abandoned building"
    assert clean("rusted pipes") == "rusted pipe"
    assert clean("broken glass") == "broken glass"


@pytest.mark.parametrize(
    "word",
    [
        "graffiti",
        "bus",
        "canvas",
        "lens",
        "moss",
        "debris",
        "data",
        "media",
        "series",
        "people",
        "pants",
        "clothes",
        "1girl",
        "mid",
    ],
)
def test_headwords_mass_nouns_and_latin_plurals_stay(word: str) -> None:
    assert clean(word) == word


def test_glasses_are_eyewear_not_glass() -> None:
    # Decision: "glasses" (a WD14 tag: eyewear) and "glass" (the material, "broken glass") stay apart.
    assert clean("glasses") == "glasses" and clean("sunglasses") == "sunglasses"
    assert clean("glass") == "glass"


def test_empty_and_punctuation_only_tags() -> None:
    assert clean("") == "" and clean(" _ - ") == ""
    assert clean("^_^") == "^ ^"


def test_synonyms_apply_after_normalisation_on_both_sides() -> None:
    norm = Normaliser({"Derelict": "Abandoned", "broken_windows": "smashed window"})
    assert norm("derelict") == "abandoned"
    assert norm("DERELICT") == "abandoned"
    assert norm("broken window") == "smashed window"  # the key was normalised too
    assert norm("abandoned") == "abandoned"
    assert norm("rust") == "rust"
    # Applied once, not chained: a -> b, b -> c leaves a at b.
    chained = Normaliser({"a1": "b1", "b1": "c1"})
    assert chained("a1") == "b1" and chained("b1") == "c1"


def test_synonyms_that_collide_after_normalisation_are_an_error() -> None:
    with pytest.raises(SynonymError, match="both normalise to 'window'"):
        Normaliser({"window": "glass", "Windows": "pane"})


def test_synonym_file_format(tmp_path: Path) -> None:
    path = tmp_path / "synonyms.txt"
    path.write_text(
        "# my archive's words\n\nderelict = abandoned   # trailing comment\n"
        "decrepit, ruined = abandoned\n  staircase=stairs\n",
        encoding="utf-8",
    )
    assert load_synonyms(path) == {
        "derelict": "abandoned",
        "decrepit": "abandoned",
        "ruined": "abandoned",
        "staircase": "stairs",
    }
    norm = Normaliser(load_synonyms(path))
    assert norm("Staircase") == "stair" and norm("ruined") == "abandoned"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("derelict abandoned", "expected 'tag = name'"),
        ("= abandoned", "expected 'tag = name'"),
        ("derelict =", "expected 'tag = name'"),
        ("a = b = c", "expected 'tag = name'"),
        ("a = b\na = c", "already mapped to 'b'"),
    ],
)
def test_bad_synonym_lines_name_the_line(text: str, message: str) -> None:
    with pytest.raises(SynonymError, match=message) as info:
        parse_synonyms(text, "syn.txt")
    assert str(info.value).startswith(f"syn.txt:{len(text.splitlines())}:")


def test_missing_synonym_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SynonymError, match="cannot read the synonym file"):
        load_synonyms(tmp_path / "nope.txt")


def test_inflect_is_imported_without_typeguard_checks_and_typeguard_is_left_as_it_was() -> None:
    import typeguard

    from orchestrator.compare import normalise

    before = typeguard.typechecked
    engine = normalise._inflector()
    assert typeguard.typechecked is before, "the pass-through is only for inflect's own import"
    assert engine.singular_noun("windows") == "window" and engine.singular_noun("rusted") is False

    def f(x: int) -> int:
        return x

    assert normalise._unchecked(f) is f and normalise._unchecked(collection_check_strategy=None)(f) is f


def test_remembered_answers_are_the_same_and_the_memo_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    norm = Normaliser({"derelict": "abandoned"})
    monkeypatch.setattr(Normaliser, "MEMO_LIMIT", 50)
    words = [f"Broken_Window{i}s" for i in range(120)] + ["Derelict", "Rusty_Pipes"]
    first = [norm(w) for w in words]
    assert first == [clean(w) if w != "Derelict" else "abandoned" for w in words]
    assert [norm(w) for w in reversed(words)] == first[::-1], "asked again, from the memo or not: the same"
    assert len(norm._memo) <= 50
