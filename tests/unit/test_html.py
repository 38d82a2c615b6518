"""The HTML report without a browser: escaping, the embedded JSON, the CSP hash, thumbnails."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from orchestrator.compare import compare
from orchestrator.document import Document
from orchestrator.report.html import to_html
from orchestrator.report.thumbnails import thumbnail
from tests.html_document import HOSTILE_CAPTION, HOSTILE_TAG, make_document

DATA_BLOCK = re.compile(r'<script type="application/json" id="mltag-data">(.*?)</script>', re.S)
RECORDS = re.compile(r'<script type="application/json" class="mltag-records">(.*?)</script>', re.S)
THUMBS = re.compile(r'<script type="application/json" class="mltag-thumbs">(.*?)</script>', re.S)


def records(html: str) -> list[dict]:
    """Every image's record (what report.js draws), from all the data blocks in page order."""
    return [r for block in RECORDS.findall(html) for r in json.loads(block)]


def thumbs(html: str) -> list[str | None]:
    return [t for block in THUMBS.findall(html) for t in json.loads(block)]


@pytest.fixture()
def document(tmp_path: Path) -> Document:
    return make_document(tmp_path / "photos")


@pytest.fixture()
def html(document: Document) -> str:
    return to_html(document, compare(document))


def _decoded(uri: str | None) -> Image.Image:
    assert uri is not None and uri.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_model_output_is_escaped(html: str) -> None:
    assert HOSTILE_CAPTION not in html and "window.pwned=1</script>" not in html
    assert HOSTILE_TAG not in html and "&lt;b&gt;bold&lt;/b&gt;" in html  # the heat map's row
    assert "runner <b>did not</b>" not in html and "&lt;notes&gt; &amp; scores" in html
    blocks = [
        '<script type="application/json" class="mltag-records">',
        '<script type="application/json" class="mltag-thumbs">',
    ]
    assert re.findall(r"<script\b[^>]*>", html) == [
        '<script type="application/json" id="mltag-data">',
        *blocks,
        "<script>",
    ]
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I), "nothing remote"


def test_json_blocks_are_escaped_and_round_trip(html: str, document: Document) -> None:
    (block,) = DATA_BLOCK.findall(html)
    data = json.loads(block)
    assert data["models"] == ["wd14", "clip", "florence2", "broken"]
    assert set(data["statuses"]) == {"ok", "no_tags", "timeout", "error", "bad_image", "skipped"}
    for text in (block, *RECORDS.findall(html), *THUMBS.findall(html)):
        assert not set("<>&") & set(text), "< > & are \\u escaped inside every JSON block"
    # The hostile text comes back exactly from the records: the page's script sets it as text.
    got = records(html)
    assert [r["p"] for r in got] == [i["path"] for i in document["images"]]
    assert got[0]["r"][2]["q"] == HOSTILE_CAPTION
    assert [t[0] for t in got[0]["r"][0]["g"]] == ["broken_window", "general", HOSTILE_TAG, "graffiti"]
    assert got[0]["r"][3] == {"s": "timeout", "m": "runner <b>did not</b> answer", "g": [], "k": 10}


def test_the_csp_allows_exactly_the_inline_script(html: str) -> None:
    (allowed,) = re.findall(r"script-src 'sha256-([A-Za-z0-9+/=]+)'", html)
    script = html.rsplit("<script>", 1)[1].split("</script>", 1)[0]
    assert base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() == allowed
    assert "default-src 'none'" in html and "img-src data:" in html


def test_thumbnails_and_placeholder(html: str) -> None:
    uris = thumbs(html)
    assert len(uris) == 4 and all(_decoded(u).size[0] > 0 for u in uris[:3])
    assert uris[3] is None, "the file that is not an image has no thumbnail"
    assert records(html)[3]["e"].startswith("cannot read image") and "e" not in records(html)[0]


def test_images_are_written_in_blocks(document: Document, monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of CHUNK images: records and thumbnails stay paired and in order across blocks."""
    monkeypatch.setattr("orchestrator.report.html.CHUNK", 3)
    html = to_html(document, compare(document))
    assert len(RECORDS.findall(html)) == len(THUMBS.findall(html)) == 2
    assert [r["i"] for r in records(html)] == ["img-0", "img-1", "img-2", "img-3"]
    assert [t is None for t in thumbs(html)] == [False, False, False, True]


def test_thumbnail_is_upright_small_and_opaque(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.new("RGBA", (1000, 500), (0, 128, 255, 0)).save(big)  # fully transparent: white, not black
    uri, why = thumbnail(big)
    assert why is None
    img = _decoded(uri)
    assert img.size == (256, 128) and img.mode == "RGB"
    pixel = img.getpixel((128, 64))
    assert isinstance(pixel, tuple) and min(pixel) > 240
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 8
    Image.new("RGB", (300, 100), (10, 200, 10)).save(rotated, exif=exif.tobytes())
    width, height = _decoded(thumbnail(rotated)[0]).size
    assert height == 256 and width in (85, 86), "EXIF orientation 8: the 300x100 photo stands upright"
    deep = tmp_path / "deep.png"
    Image.new("I;16", (40, 40), 40000).save(deep)  # 16-bit: scaled to ~156, not clipped to 255
    pixel = _decoded(thumbnail(deep)[0]).getpixel((20, 20))
    assert isinstance(pixel, tuple) and 140 < pixel[0] < 170


def test_unreadable_images_give_reasons(tmp_path: Path) -> None:
    assert thumbnail(tmp_path / "gone.jpg") == (None, "file not found")
    (tmp_path / "empty.jpg").write_bytes(b"")
    uri, why = thumbnail(tmp_path / "empty.jpg")
    assert uri is None and why is not None and why.startswith("cannot read image")


def test_the_real_comparison_renders(document: Document) -> None:
    comparison = compare(document)
    html = to_html(document, comparison)
    heatmap = html.split('id="heatmap"', 1)[1].split("</table>", 1)[0]
    assert heatmap.count('<td class="hm') == len(comparison["folder"]["matrix"]) * len(document["models"])
    (block,) = DATA_BLOCK.findall(html)
    assert not set("<>&") & set(block) and HOSTILE_CAPTION not in html


def test_without_comparison_the_document_alone_renders(document: Document) -> None:
    html = to_html(document)
    assert "No comparison in this document" in html and 'id="heatmap"' not in html
    assert html.count('class="bar-row"') == 3 * len(document["models"])
    table = html.split('class="timing-table"', 1)[1].split("</table>", 1)[0]
    found = re.search(r'data-model="wd14"><th>wd14</th>(.*?)</tr>', table, re.S)
    assert found
    row = found.group(1)
    # load and warm-up from the model entry, the mean over wd14's three timed cells (31, 41, 51 ms)
    assert re.findall(r"<td>(.*?)</td>", row)[:3] == ["1.50 s", "200 ms", "41 ms"]


def test_relative_paths_are_read_from_image_root(document: Document, tmp_path: Path) -> None:
    for image in document["images"]:
        image["path"] = str(Path(image["path"]).relative_to(tmp_path))
    assert sum(t is not None for t in thumbs(to_html(document, image_root=tmp_path))) == 3
    assert thumbs(to_html(document, image_root=tmp_path / "elsewhere")) == [None] * 4


def test_models_running_remote_code_are_marked(document: Document) -> None:
    document["models"][2]["remote_code"] = True  # e.g. moondream2: the repository's own code ran
    html = to_html(document)
    models = html.split('<section id="models">', 1)[1].split("</section>", 1)[0]
    rows = dict(re.findall(r'<tr data-model="([^"]+)">(.*?)</tr>', models, re.S))
    marked = [name for name, row in rows.items() if "remote code</span>" in row]
    assert marked == [document["models"][2]["name"]]


def test_cached_thumbnails_are_made_once_and_kept_outside_the_archive(document: Document, tmp_path: Path) -> None:
    from orchestrator.report.thumbnails import cache_file, cached_thumbnail

    cache = tmp_path / "cache"
    first = document["images"][0]
    source = Path(first["path"])
    made, why = cached_thumbnail(cache, first["sha256"], source)
    assert made is not None and why is None and cache_file(cache, first["sha256"], 256).read_bytes() == made
    source.rename(source.with_suffix(".moved"))  # gone from its path: its content's thumbnail is still known
    assert cached_thumbnail(cache, first["sha256"], source) == (made, None)
    assert cached_thumbnail(cache, "f" * 64, source) == (None, "file not found"), "another content: made anew"
    assert not any((tmp_path / "photos").glob("*.jpg.*")) and sorted(p.name for p in cache.rglob("*.jpg")) == [
        f"{first['sha256']}-256.jpg"
    ]
    blocked = tmp_path / "not-a-folder"  # the cache cannot be made there (as a full or read-only disk)
    blocked.write_text("")
    second = document["images"][1]
    assert cached_thumbnail(blocked / "cache", second["sha256"], Path(second["path"]))[0] is not None, (
        "a cache that cannot be written still gives the thumbnail"
    )


def test_the_report_takes_thumbnails_from_the_cache(document: Document, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    buf = io.StringIO()
    from orchestrator.document import Results
    from orchestrator.report.html import write_html

    write_html(Results.of(document), buf, thumb_cache=cache)
    assert len(list(cache.rglob("*.jpg"))) == 3
    for image in document["images"]:
        Path(image["path"]).unlink()
    again = io.StringIO()
    write_html(Results.of(document), again, thumb_cache=cache)
    assert thumbs(again.getvalue())[:3] == thumbs(buf.getvalue())[:3] and None not in thumbs(again.getvalue())[:3]


def test_a_score_that_is_not_a_number_is_null_in_strict_json(document: Document) -> None:
    """JSON has no NaN (the browser's JSON.parse refuses it): such a score travels as null."""
    document["images"][0]["results"]["clip"]["tags"][0]["score"] = float("nan")

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in a JSON block")

    got = [r for block in RECORDS.findall(to_html(document)) for r in json.loads(block, parse_constant=refuse)]
    assert ["broken window", None] in [t[:2] for t in got[0]["r"][1]["g"]]
