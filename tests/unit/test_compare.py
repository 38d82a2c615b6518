"""The comparison (orchestrator/compare): hand-built documents, every figure computed by hand below."""

from __future__ import annotations

import copy
import json

import pytest

from orchestrator.compare import compare
from orchestrator.compare.captags import caption_tags
from orchestrator.compare.cells import jaccard
from orchestrator.compare.timing import percentile
from orchestrator.document import Body, ComparisonResult, ModelEntry, Tag

SHA1, SHA2 = "1" * 64, "2" * 64


def tag(name: str, score: float, estimated: bool = False) -> Tag:
    return {"name": name, "score": score, "estimated": True} if estimated else {"name": name, "score": score}


def model(name: str, kind: str = "tagger", load_s: float | None = 1.0, warmup_s: float | None = None) -> ModelEntry:
    return {"name": name, "kind": kind, "revision": "r", "load_s": load_s, "warmup_s": warmup_s, "device": "cpu"}


def document() -> Body:
    """Four models, two unique images and one duplicate of the first.

    A, B: taggers; C: a captioner (estimated scores); D: fails everywhere.
    image 1  A: Windows .9, rust .6, door .3   B: window .8, graffiti .5   C: rust .75~, door .5~
    image 2  A: window .7, graffiti .4          B: graffiti .6             C: timeout
    """
    return {
        "models": [model("A"), model("B"), model("C", "captioner", 2.0, 0.5), model("D", load_s=None)],
        "images": [
            {
                "path": "one.jpg",
                "sha256": SHA1,
                "results": {
                    "A": {
                        "status": "ok",
                        "tags": [tag("Windows", 0.9), tag("rust", 0.6), tag("door", 0.3)],
                        "inference_s": 0.1,
                    },
                    "B": {"status": "ok", "tags": [tag("window", 0.8), tag("graffiti", 0.5)], "inference_s": 1.0},
                    "C": {
                        "status": "ok",
                        "caption": "Rust and a door.",
                        "tags": [tag("rust", 0.75, True), tag("door", 0.5, True)],
                        "inference_s": 2.0,
                    },
                    "D": {"status": "error", "message": "boom"},
                },
            },
            {
                "path": "two.jpg",
                "sha256": SHA2,
                "results": {
                    "A": {"status": "ok", "tags": [tag("window", 0.7), tag("graffiti", 0.4)], "inference_s": 0.3},
                    "B": {"status": "ok", "tags": [tag("graffiti", 0.6)], "inference_s": 3.0},
                    "C": {"status": "timeout", "message": "slow", "inference_s": None},
                    "D": {"status": "error", "message": "boom"},
                },
            },
            {
                "path": "copy-of-one.jpg",
                "sha256": SHA1,
                "duplicate_of": "one.jpg",
                "results": {
                    "A": {"status": "ok", "tags": [tag("staircase", 0.99)], "inference_s": 9.0},
                    "B": {"status": "ok", "tags": [tag("staircase", 0.99)], "inference_s": 9.0},
                    "C": {"status": "ok", "tags": [], "inference_s": 9.0},
                    "D": {"status": "error", "message": "boom"},
                },
            },
        ],
    }


@pytest.fixture(scope="module")
def result() -> ComparisonResult:
    return compare(document(), top_k=2)


def test_the_document_is_not_modified_and_the_result_is_json() -> None:
    doc = document()
    before = copy.deepcopy(doc)
    out = compare(doc, top_k=2, threshold=0.5, synonyms={"graffiti": "tagging"})
    assert doc == before
    assert json.loads(json.dumps(out)) == out
    assert out["models"] == ["A", "B", "C", "D"] and out["top_k"] == 2 and out["threshold"] == 0.5
    assert set(out["definitions"]) >= {"normalisation", "consensus_score", "agreement", "estimated"}
    assert "top-2" in out["definitions"]["agreement"] and "Jaccard" in out["definitions"]["agreement"]


def test_per_image_consensus_is_models_agreeing_times_mean_confidence(result: ComparisonResult) -> None:
    # Top-2 per model on image 1: A {window .9, rust .6}, B {window .8, graffiti .5}, C {rust .75~, door .5~}
    #   window   2 x (.9 + .8) / 2  = 1.7
    #   rust     2 x (.6 + .75) / 2 = 1.35 (estimated: C's score)
    #   door     1 x .5 = .5, graffiti 1 x .5 = .5 (tie: fewer models? equal; then by name)
    one = result["images"][SHA1]
    assert one["path"] == "one.jpg"
    assert [(c["tag"], c["n_models"], c["score"]) for c in one["consensus"]] == [
        ("window", 2, 1.7),
        ("rust", 2, 1.35),
        ("door", 1, 0.5),
        ("graffiti", 1, 0.5),
    ]
    rust = one["consensus"][1]
    assert rust["models"] == ["A", "C"] and rust["mean_confidence"] == 0.675 and rust["estimated"] is True
    assert one["consensus"][0]["estimated"] is False
    # Per-image tags: every model's score for the tags shown, even outside its top-2 (A's door .3).
    assert one["tags"]["door"] == {"A": 0.3, "C": 0.5}
    assert one["tags"]["window"] == {"A": 0.9, "B": 0.8}  # "Windows" normalised to "window"
    assert one["estimated"] == {"rust": ["C"], "door": ["C"]}


def test_per_image_agreement_is_mean_pairwise_jaccard(result: ComparisonResult) -> None:
    # image 1: A-B {window,rust} vs {window,graffiti} = 1/3; A-C {window,rust} vs {rust,door} = 1/3;
    #          B-C = 0/4 = 0; D has no ok cell: None. Mean of the three = 2/9.
    one = result["images"][SHA1]
    assert one["pairwise"]["A"]["B"] == pytest.approx(1 / 3, abs=1e-6)
    assert one["pairwise"]["A"]["C"] == pytest.approx(1 / 3, abs=1e-6)
    assert one["pairwise"]["B"]["C"] == 0.0
    assert one["pairwise"]["A"]["D"] is None and one["pairwise"]["D"]["D"] is None
    assert one["pairwise"]["A"]["A"] == 1.0
    assert one["agreement"] == pytest.approx(2 / 9, abs=1e-6)
    # image 2: only A and B are ok: {window,graffiti} vs {graffiti} = 1/2.
    two = result["images"][SHA2]
    assert two["agreement"] == 0.5 and two["pairwise"]["A"]["C"] is None


def test_folder_consensus_averages_the_per_image_scores(result: ComparisonResult) -> None:
    # image 2: graffiti 2 x (.4 + .6) / 2 = 1.0, window 1 x .7 = .7
    # folder (2 unique images; the duplicate is ignored):
    #   window   (1.7 + .7) / 2 = 1.2,  models A,B, mean conf (.9 + .8 + .7) / 3 = .8, images 2
    #   graffiti (.5 + 1.0) / 2 = .75,  models A,B, mean conf (.5 + .4 + .6) / 3 = .5, images 2
    #   rust     1.35 / 2 = .675,       models A,C, mean conf .675, images 1
    #   door     .5 / 2 = .25,          model C
    folder = result["folder"]
    assert folder["n_images"] == 2
    got = [(c["tag"], c["n_models"], c["score"], c["mean_confidence"], c["images"]) for c in folder["consensus"]]
    assert got == [
        ("window", 2, 1.2, 0.8, 2),
        ("graffiti", 2, 0.75, 0.5, 2),
        ("rust", 2, 0.675, 0.675, 1),
        ("door", 1, 0.25, 0.5, 1),
    ]
    assert "staircase" not in {c["tag"] for c in folder["consensus"]}  # only in the duplicate row


def test_matrix_rows_follow_the_consensus_with_counts_per_model(result: ComparisonResult) -> None:
    matrix = result["folder"]["matrix"]
    assert [r["tag"] for r in matrix] == [c["tag"] for c in result["folder"]["consensus"]]
    window = matrix[0]
    assert window["models"] == {
        "A": {"images": 2, "mean_score": 0.8, "estimated": False},
        "B": {"images": 1, "mean_score": 0.8, "estimated": False},
    }
    assert window["n_models"] == 2 and window["score"] == 1.2
    rust = matrix[2]
    assert rust["models"]["C"] == {"images": 1, "mean_score": 0.75, "estimated": True}
    assert "D" not in rust["models"]


def test_folder_pairwise_and_agreement(result: ComparisonResult) -> None:
    # A-B: mean(1/3, 1/2) = 5/12; A-C: 1/3 (image 1 only: C timed out on 2); B-C: 0.
    # Folder agreement: mean over the pairs with a value = (5/12 + 4/12 + 0) / 3 = 1/4.
    pairwise = result["folder"]["pairwise"]
    assert pairwise["A"]["B"] == pytest.approx(5 / 12, abs=1e-6) == pairwise["B"]["A"]
    assert pairwise["A"]["C"] == pytest.approx(1 / 3, abs=1e-6)
    assert pairwise["B"]["C"] == 0.0
    assert all(pairwise["D"][m] is None for m in "ABCD")
    assert result["folder"]["agreement"] == 0.25 and result["folder"]["agreement_note"] is None


def test_confidence_keeps_every_tag_above_the_threshold(result: ComparisonResult) -> None:
    # A's door (.3) is outside its top-2, so not in the matrix's A column, but its confidence shows.
    assert result["folder"]["confidence"]["door"] == {
        "A": {"images": 1, "mean_score": 0.3, "estimated": False},
        "C": {"images": 1, "mean_score": 0.5, "estimated": True},
    }


def test_status_counts_and_timing_count_unique_images(result: ComparisonResult) -> None:
    folder = result["folder"]
    assert folder["status_counts"] == {"A": {"ok": 2}, "B": {"ok": 2}, "C": {"ok": 1, "timeout": 1}, "D": {"error": 2}}
    # A: .1 and .3 s -> mean .2, p50 .2, p95 .1 + .95 x .2 = .29, 2 images / .4 s = 5 per second.
    # total: load 1 s + no warm-up + .4 s of inference
    assert folder["timing"]["A"] == {
        "load_s": 1.0,
        "warmup_s": None,
        "mean_s": 0.2,
        "p50_s": 0.2,
        "p95_s": 0.29,
        "images_per_s": 5.0,
        "n": 2,
        "inference_total_s": 0.4,
        "total_s": 1.4,
    }
    assert folder["timing"]["C"]["n"] == 1 and folder["timing"]["C"]["warmup_s"] == 0.5
    assert folder["timing"]["D"] == {
        "load_s": None,
        "warmup_s": None,
        "mean_s": None,
        "p50_s": None,
        "p95_s": None,
        "images_per_s": None,
        "n": 0,
        "inference_total_s": 0,
        "total_s": 0,
    }


def test_percentiles_by_hand() -> None:
    # [1, 2, 3, 4, 10]: p50 = 3; p95 at rank .95 x 4 = 3.8 -> 4 + .8 x (10 - 4) = 8.8
    assert percentile([10.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 10.0], 95) == pytest.approx(8.8)
    assert percentile([0.5], 95) == 0.5


def test_threshold_filters_before_comparison() -> None:
    # threshold .55: image 1 A {window .9, rust .6}, B {window .8}, C {rust .75~}; image 2 A {window .7},
    # B {graffiti .6}. window: (1.7 + .7) / 2 = 1.2; rust 1.35 / 2 = .675; graffiti .6 / 2 = .3.
    out = compare(document(), top_k=2, threshold=0.55)
    assert [(c["tag"], c["score"]) for c in out["folder"]["consensus"]] == [
        ("window", 1.2),
        ("rust", 0.675),
        ("graffiti", 0.3),
    ]
    assert "door" not in out["folder"]["confidence"]
    assert "0.55" in out["definitions"]["agreement"]


def test_top_k_zero_compares_every_tag() -> None:
    # image 1 with all tags: A {window, rust, door}, B {window, graffiti}: A-B = 1/4.
    out = compare(document(), top_k=0)
    assert out["images"][SHA1]["pairwise"]["A"]["B"] == 0.25
    assert "all normalised tags" in out["definitions"]["agreement"]


def test_synonyms_merge_tags_across_models() -> None:
    doc: Body = {
        "models": [model("A"), model("B")],
        "images": [
            {
                "path": "x.jpg",
                "sha256": SHA1,
                "results": {
                    "A": {"status": "ok", "tags": [tag("abandoned", 0.8)]},
                    "B": {"status": "ok", "tags": [tag("Derelict", 0.6)]},
                },
            }
        ],
    }
    assert compare(doc)["folder"]["agreement"] == 0.0
    merged = compare(doc, synonyms={"derelict": "abandoned"})
    assert merged["folder"]["agreement"] == 1.0
    assert merged["folder"]["consensus"][0] == {
        "tag": "abandoned",
        "n_models": 2,
        "mean_confidence": 0.7,
        "score": 1.4,
        "images": 1,
        "models": ["A", "B"],
        "estimated": False,
    }


def test_one_cell_keeps_the_best_score_of_tags_that_normalise_alike() -> None:
    doc: Body = {
        "models": [model("A")],
        "images": [
            {
                "path": "x.jpg",
                "sha256": SHA1,
                "results": {
                    "A": {"status": "ok", "tags": [tag("window", 0.2), tag("Windows", 0.7), tag("WINDOW", 0.4)]}
                },
            }
        ],
    }
    assert compare(doc)["images"][SHA1]["tags"] == {"window": {"A": 0.7}}


def test_one_model_only_has_no_agreement_and_says_why() -> None:
    doc: Body = {
        "models": [model("A")],
        "images": [{"path": "x.jpg", "sha256": SHA1, "results": {"A": {"status": "ok", "tags": [tag("rust", 0.5)]}}}],
    }
    out = compare(doc)
    note = out["folder"].get("agreement_note")
    assert out["folder"]["agreement"] is None and note is not None and "only one model" in note
    assert out["images"][SHA1]["agreement"] is None
    assert out["folder"]["consensus"][0]["tag"] == "rust"


def test_models_without_ok_cells_and_empty_tag_lists() -> None:
    doc: Body = {
        "models": [model("A"), model("B"), model("C")],
        "images": [
            {
                "path": "x.jpg",
                "sha256": SHA1,
                "results": {
                    "A": {"status": "ok", "tags": []},
                    "B": {"status": "ok", "tags": [tag("rust", 0.5)]},
                    "C": {"status": "crashed"},
                },
            },
            {
                "path": "y.jpg",
                "sha256": SHA2,
                "results": {
                    "A": {"status": "ok", "tags": []},
                    "B": {"status": "no_tags", "tags": []},
                    "C": {"status": "crashed"},
                },
            },
        ],
    }
    out = compare(doc)
    # x: A empty vs B {rust}: 0. y: only A is ok: nothing to pair. C: never ok.
    assert out["images"][SHA1]["pairwise"]["A"]["B"] == 0.0 and out["images"][SHA1]["agreement"] == 0.0
    assert out["images"][SHA2]["agreement"] is None
    assert out["images"][SHA2]["agreement_note"] == "fewer than two models have ok results"
    assert out["folder"]["agreement"] == 0.0
    assert out["folder"]["pairwise"]["C"] == {"A": None, "B": None, "C": None}
    assert out["folder"]["status_counts"]["B"] == {"ok": 1, "no_tags": 1}
    assert out["folder"]["status_counts"]["C"] == {"crashed": 2}
    assert [r["tag"] for r in out["folder"]["matrix"]] == ["rust"]


def test_no_ok_cell_anywhere() -> None:
    doc: Body = {
        "models": [model("A"), model("B")],
        "images": [
            {"path": "x.jpg", "sha256": SHA1, "results": {"A": {"status": "bad_image"}, "B": {"status": "bad_image"}}}
        ],
    }
    out = compare(doc)
    assert out["folder"]["consensus"] == [] and out["folder"]["matrix"] == []
    assert out["folder"]["agreement"] is None
    assert out["folder"]["agreement_note"] == "fewer than two models have ok results"


def test_caption_without_tags_is_extracted_like_the_pipeline_does() -> None:
    caption = "A rusty pipe under broken windows."
    doc: Body = {
        "models": [model("cap", "captioner"), model("A")],
        "images": [
            {
                "path": "x.jpg",
                "sha256": SHA1,
                "results": {
                    "cap": {"status": "ok", "caption": caption},
                    "A": {"status": "ok", "tags": [tag("broken_windows", 0.9), tag("pipe", 0.8)]},
                },
            }
        ],
    }
    extracted = caption_tags(caption)
    assert extracted and all(t["estimated"] for t in extracted)
    out = compare(doc, top_k=0)
    tags = out["images"][SHA1]["tags"]
    # The urbex phrase list keeps "broken window" whole; its "pipes" and A's "pipe" meet after normalisation.
    assert set(tags["broken window"]) == {"cap", "A"} and set(tags["pipe"]) == {"cap", "A"}
    assert out["images"][SHA1]["estimated"]["pipe"] == ["cap"]
    assert doc["images"][0]["results"]["cap"] == {"status": "ok", "caption": caption}  # raw stays raw


def test_jaccard() -> None:
    assert jaccard({"a", "b"}, {"b", "c"}) == pytest.approx(1 / 3)
    assert jaccard(set(), {"a"}) == 0.0 and jaccard(set(), set()) is None


def test_rating_tags_and_judges_stay_out_of_the_agreement() -> None:
    doc: Body = {
        "models": [model("A"), model("B"), model("J", "judge")],
        "images": [
            {
                "path": "x.jpg",
                "sha256": SHA1,
                "results": {
                    "A": {
                        "status": "ok",
                        "tags": [{"name": "general", "score": 0.9, "category": "rating"}, tag("rust", 0.5)],
                    },
                    "B": {"status": "ok", "tags": [tag("rust", 0.7)]},
                    "J": {"status": "ok", "tags": [tag("rust", 0.9), tag("door", 0.8)], "inference_s": 4.0},
                },
            }
        ],
    }
    out = compare(doc)
    assert out["synthesis"] == ["J"]
    assert out["folder"]["agreement"] == 1.0 and set(out["folder"]["pairwise"]) == {"A", "B"}
    assert [(c["tag"], c["models"]) for c in out["folder"]["consensus"]] == [("rust", ["A", "B"])]
    assert "general" not in out["folder"]["confidence"]
    assert out["folder"]["confidence"]["door"] == {"J": {"images": 1, "mean_score": 0.8, "estimated": False}}
    assert out["folder"]["timing"]["J"]["n"] == 1 and out["folder"]["status_counts"]["J"] == {"ok": 1}


def test_consensus_cut_off_and_the_plan_s_summary(result: ComparisonResult) -> None:
    # image 1: A, B, C answered -> k = ceil(3/4 x 3) = 3; no tag has 3 models. image 2: A, B -> k = 2: graffiti.
    one, two = result["images"][SHA1], result["images"][SHA2]
    assert one["answered"] == ["A", "B", "C"] and one["consensus_min"] == 3
    assert one["summary"] == {"total_unique_tags": 4, "common_tags": [], "model_agreement_score": one["agreement"]}
    assert two["consensus_min"] == 2 and two["summary"]["common_tags"] == ["graffiti"]
    assert two["summary"]["total_unique_tags"] == 2
    folder = result["folder"]
    assert result["consensus_min"] == 3 and folder["answered"] == ["A", "B", "C"]
    assert folder["summary"] == {
        "total_unique_tags": 4,
        "common_tags": [],
        "model_agreement_score": folder["agreement"],
    }
    # --consensus-min 2: the tags two models gave, best consensus score first
    two_plus = compare(document(), top_k=2, consensus_min=2)
    assert two_plus["folder"]["summary"]["common_tags"] == ["window", "graffiti", "rust"]
    assert two_plus["images"][SHA1]["summary"]["common_tags"] == ["window", "rust"]
    assert "at least 2 models (--consensus-min)" in two_plus["definitions"]["common_tags"]


def test_only_one_closed_vocabulary_holds_the_tag() -> None:
    """A WD14 tag CLIP's vocabulary lacks is noted; one a captioner could say is not decided by it."""
    doc: Body = {
        "models": [model("W"), model("Z", "zero-shot"), model("C", "captioner")],
        "images": [
            {
                "path": "x.jpg",
                "sha256": SHA1,
                "results": {
                    "W": {
                        "status": "ok",
                        "tags": [tag("no_humans", 0.9), tag("rust", 0.8)],
                        "raw": {"scores": {"no_humans": 0.9, "rust": 0.8, "window": 0.1}},
                    },
                    "Z": {"status": "ok", "tags": [tag("rust", 0.6), tag("window", 0.3), tag("factory", 0.1)]},
                    "C": {"status": "ok", "tags": [tag("rust", 0.7, True), tag("door", 0.5, True)]},
                },
            }
        ],
    }
    one = compare(doc)["images"][SHA1]
    assert one["only_vocabulary"] == {"no human": "W", "factory": "Z"}
