"""Caption -> tags extraction (orchestrator/compare/captags.py): phrases, plurals, stopwords, scores."""

from __future__ import annotations

import pytest

from orchestrator.compare.captags import extract_tags, load_stopwords, score, singular

PHRASES = [
    "peeling paint",
    "broken window",
    "black and white",
    "pipes",
    "abandoned building",
    "abandoned",
    "light rays",
    "mid-century modern",
]
STOP = frozenset(
    {"the", "a", "an", "and", "of", "in", "with", "is", "are", "on", "image", "shows", "photo", "background", "there"}
)


def names(caption: str, phrases: list[str] = PHRASES, stopwords: frozenset[str] | None = STOP) -> list[str]:
    return [t["name"] for t in extract_tags(caption, phrases, stopwords)]


def test_phrases_are_kept_whole_and_their_words_not_repeated() -> None:
    got = names("A room with peeling paint and a broken window.")
    assert "peeling paint" in got and "broken window" in got
    assert not {"peeling", "paint", "broken", "window"} & set(got)
    assert got == ["room", "peeling paint", "broken window"]


def test_longest_phrase_wins() -> None:
    assert names("An abandoned building.") == ["abandoned building"]
    assert names("An abandoned hospital.") == ["abandoned", "hospital"]


def test_phrase_matching_ignores_case_and_punctuation_but_not_clause_breaks() -> None:
    assert names("PEELING   Paint!") == ["peeling paint"]
    assert names("Everything is broken. Window frames rot.") == ["everything", "broken", "window", "frames", "rot"]
    assert names("(black and white)") == ["black and white"]
    assert names("a mid-century modern lobby") == ["mid-century modern", "lobby"]


def test_plurals_match_phrases_in_both_directions() -> None:
    assert names("Two broken windows.", stopwords=STOP | {"two"}) == ["broken window"]
    assert names("A rusty pipe.") == ["rusty", "pipes"]  # the vocabulary's spelling is kept
    assert names("Glass, boxes, benches, bodies.") == ["glass", "boxes", "benches", "bodies"]


def test_singular_and_plural_words_are_one_tag_named_by_the_commonest_form() -> None:
    tags = extract_tags("Doors, doors and a door.", [], STOP)
    assert [(t["name"], t["score"]) for t in tags] == [("doors", score(0, 3, 5))]
    assert singular("windows") == "window" and singular("glass") == "glass" and singular("stories") == "story"


def test_stopwords_filler_short_tokens_and_numbers_are_dropped() -> None:
    stop = load_stopwords()
    caption = (
        "The image shows a photo of an old hall in the background; there are 3 chairs, 2nd floor, "
        "it's visible in the foreground of the scene, a TV and the 1970s wallpaper."
    )
    got = names(caption, [], stop)
    assert got == ["hall", "chairs", "floor", "1970s", "wallpaper"]
    assert {
        "image",
        "photo",
        "shows",
        "depicts",
        "appears",
        "visible",
        "background",
        "foreground",
        "view",
        "scene",
        "picture",
        "the",
        "and",
        "of",
    } <= stop


def test_phrase_beats_the_stoplist() -> None:
    # "and" is a stopword, yet it is part of a vocabulary phrase
    assert names("A black and white photo.") == ["black and white"]


def test_scores_follow_position_then_frequency() -> None:
    tags = extract_tags("Graffiti covers the hall; a mural faces the graffiti.", ["mural"], STOP)
    by_name = {t["name"]: t["score"] for t in tags}
    # 9 words: graffiti at 0 twice, covers at 1, hall at 3, mural at 5, faces at 6
    assert by_name == {
        n: round(score(i, c, 9), 4)
        for n, i, c in (("graffiti", 0, 2), ("covers", 1, 1), ("hall", 3, 1), ("mural", 5, 1), ("faces", 6, 1))
    }
    assert [t["name"] for t in tags] == ["graffiti", "covers", "hall", "mural", "faces"]
    once = extract_tags("dust rubble", [], STOP)
    assert once[0]["score"] > once[1]["score"]  # earlier is more salient
    # a repeated word can outrank the first one: dust 0.5 * 7/8 + 0.5 * 3/4 > rubble 0.5 + 0.25
    assert names("Rubble, dust and more dust in the hall.") == ["dust", "rubble", "more", "hall"]


@pytest.mark.parametrize(
    "caption",
    [
        "peeling paint " * 50,
        "x",
        "The image shows rust, rust, rust on a door near a window at the very end of a long caption.",
    ],
)
def test_scores_in_range_marked_estimated_sorted_without_duplicates(caption: str) -> None:
    tags = extract_tags(caption, PHRASES, STOP)
    for tag in tags:
        assert set(tag) == {"name", "score", "estimated", "category"}
        assert tag["estimated"] is True and tag["category"] == "caption"
        assert 0.0 < tag["score"] <= 1.0
    assert [t["score"] for t in tags] == sorted((t["score"] for t in tags), reverse=True)
    assert len({t["name"] for t in tags}) == len(tags)


def test_deterministic_and_spellings_of_one_phrase_merge() -> None:
    caption = "Pipes, pipe, rust."
    assert extract_tags(caption, PHRASES, STOP) == extract_tags(caption, PHRASES, STOP)
    assert names(caption) == ["pipes", "rust"]


@pytest.mark.parametrize("caption", ["", "   ", "\n", "the a an", "...!?", "12 34"])
def test_empty_or_contentless_caption_gives_no_tags(caption: str) -> None:
    assert extract_tags(caption, PHRASES, STOP) == []


def test_typographic_apostrophes_and_possessives() -> None:
    assert names("The factory\u2019s boiler and the factory's chimney.") == ["factory", "boiler", "chimney"]


def test_default_stopwords_are_loaded_when_none_given() -> None:
    assert names("The image shows graffiti.", [], None) == ["graffiti"]
    assert load_stopwords() is load_stopwords()  # read once


def test_booru_style_tags_stay_one_tag() -> None:
    """A booru captioner's answer (or WD14's names) keeps no_humans and brick_wall whole, never split."""
    caption = "no_humans, brick_wall, broken_window, outdoors, scenery"
    got = names(caption)
    assert got[:2] == ["no_humans", "brick_wall"] and "broken_window" in got
    assert not {"humans", "brick", "wall", "broken", "window"} & set(got)
    # the comparison reads them as "no human", "brick wall" (normalise.py), like WD14's own tags
    from orchestrator.compare.normalise import Normaliser

    assert Normaliser()("brick_wall") == "brick wall"
