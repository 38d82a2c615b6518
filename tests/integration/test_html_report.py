"""The HTML report rendered in a real browser (headless Chromium through chromedriver).

Assertions are on the RENDERED page: injected markup stays text and never runs, thumbnails decode,
the heat map has one cell per tag x model, nothing is fetched, and the filters work. A full-page
screenshot is kept as a test artefact ($MLTAG_TEST_ARTIFACTS, else .cache/test-artifacts/).

Chromium and chromedriver are Debian packages that `.ci/run` installs; when they are missing the
test fails (CI must run it). MLTAG_SKIP_BROWSER=1 skips it on a developer machine without them.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.compare import compare
from orchestrator.paths import PROJECT_ROOT
from orchestrator.report.html import to_html
from schemas.status import SUCCESS
from tests.html_document import HOSTILE_CAPTION, HOSTILE_TAG, MODELS, UNREADABLE, make_document
from tests.support import SAMPLES, mltag

pytestmark = pytest.mark.browser

INSTALL = "apt-get install -y --no-install-recommends chromium chromium-driver"
CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
)


def artifacts_dir() -> Path:
    path = Path(os.environ.get("MLTAG_TEST_ARTIFACTS") or PROJECT_ROOT / ".cache" / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if os.environ.get("MLTAG_SKIP_BROWSER") == "1":
        pytest.skip("MLTAG_SKIP_BROWSER=1: the headless Chromium check of the HTML report is skipped")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail(
            f"chromium and chromedriver are needed for the HTML report check (found: chromium={chromium}, "
            f"chromedriver={driver}). .ci/run installs them: `{INSTALL}` (as root); or set "
            "MLTAG_SKIP_BROWSER=1 to skip this check on a developer machine."
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    with tempfile.TemporaryDirectory(prefix="mltag-chromium-") as profile:
        for flag in (*CHROME_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        chrome = webdriver.Chrome(service=Service(driver), options=options)
        chrome.set_page_load_timeout(60)
        try:
            yield chrome
        finally:
            chrome.quit()


def open_report(browser: Any, path: Path) -> None:
    browser.get(path.as_uri())
    assert browser.execute_script("return document.readyState") == "complete"


def screenshot(browser: Any, name: str) -> Path:
    """Full page: grow the window to the document's height first (a viewport shot shows only the top)."""
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(int(height) + 40, 16000))
    out = artifacts_dir() / name
    assert browser.save_screenshot(str(out)), f"screenshot to {out} failed"
    browser.set_window_size(1400, 1000)
    return out


def fetched(browser: Any) -> list[str]:
    """Every resource the page loaded, besides the file itself (data: URIs are embedded, not fetched)."""
    return browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")


def visible_images(browser: Any) -> list[str]:
    return [a.get_attribute("id") for a in browser.find_elements("css selector", "article.image") if a.is_displayed()]


def set_search(browser: Any, text: str) -> None:
    box = browser.find_element("css selector", "#tag-search")
    box.clear()
    if text:
        box.send_keys(text)
    else:  # clear() fires no input event
        browser.execute_script("arguments[0].dispatchEvent(new Event('input'))", box)


def severe_console(browser: Any) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_hostile_report_renders_safely_and_filters(browser: Any, tmp_path: Path) -> None:
    document = make_document(tmp_path / "photos")
    comparison = compare(document)
    report = tmp_path / "report.html"
    report.write_text(to_html(document, comparison), encoding="utf-8")
    open_report(browser, report)
    shot = screenshot(browser, "html-report.png")
    shutil.copy(report, artifacts_dir() / "html-report.html")
    assert shot.stat().st_size > 10_000

    # Injected markup stays text: nothing ran, the caption and the tag read literally.
    assert browser.execute_script("return typeof window.pwned") == "undefined"
    captions = [c.get_property("textContent") for c in browser.find_elements("css selector", "blockquote.caption")]
    assert HOSTILE_CAPTION in captions
    names = {t.get_property("textContent") for t in browser.find_elements("css selector", "li.tag .name .text")}
    assert HOSTILE_TAG in names
    assert browser.find_elements("css selector", "ul.tags b, blockquote.caption img, blockquote.caption script") == []
    assert severe_console(browser) == [], "no script error and no Content-Security-Policy violation"

    # Per image: one thumbnail, decoded (EXIF applied), or the placeholder for the unreadable file.
    articles = browser.find_elements("css selector", "article.image")
    assert len(articles) == len(document["images"]) == 4
    for article, image in zip(articles, document["images"], strict=True):
        thumbs = article.find_elements("css selector", ".thumb")
        assert len(thumbs) == 1
        if image["path"].endswith(UNREADABLE):
            assert thumbs[0].tag_name == "div" and "placeholder" in thumbs[0].get_attribute("class")
            continue
        assert thumbs[0].tag_name == "img" and thumbs[0].get_attribute("src").startswith("data:image/jpeg;base64,")
        width, height = browser.execute_script(
            "return [arguments[0].naturalWidth, arguments[0].naturalHeight]", thumbs[0]
        )
        assert width > 0 and height > 0
        if image["path"].endswith("rotated.jpg"):
            assert (width, height) == (60, 120), "EXIF orientation 6 turns the 120x60 photo upright"
        cells = article.find_elements("css selector", ".cell")
        assert [c.get_attribute("data-model") for c in cells] == list(MODELS)
    assert len(browser.find_elements("css selector", "img")) == 3, "no <img> besides the thumbnails"

    # Folder level: heat map = tags x models (estimated entries marked), timing bars per model and metric.
    rows = comparison["folder"]["matrix"]
    assert len(rows) >= 3
    assert len(browser.find_elements("css selector", "#heatmap td.hm")) == len(rows) * len(MODELS)
    assert len(browser.find_elements("css selector", "#heatmap tbody tr")) == len(rows)
    estimated = sum(1 for r in rows for e in r["models"].values() if e["estimated"] and e["images"])
    assert estimated > 0 and len(browser.find_elements("css selector", "#heatmap td.hm .est-mark")) == estimated
    assert len(browser.find_elements("css selector", "#timing-chart g.bar-row")) == 3 * len(MODELS)
    figure = browser.find_element("css selector", "#folder .figure")
    assert figure.find_element("css selector", ".big").text == f"{comparison['folder']['agreement']:.2f}"
    definition = figure.find_element("css selector", ".definition").get_property("textContent")
    assert definition == comparison["definitions"]["agreement"]
    consensus = browser.find_elements("css selector", "ol.consensus li .ctag")
    assert [c.get_property("textContent") for c in consensus] == [c["tag"] for c in comparison["folder"]["consensus"]]

    # Nothing was fetched: no network, no file besides the page.
    assert all(name.startswith("data:") for name in fetched(browser)), fetched(browser)

    # Model filter: unchecking clip hides every clip element (cells, heat-map column, timing rows).
    clip_box = browser.find_element("css selector", "input.f-model[value='clip']")
    clip_box.click()
    clip_elements = browser.find_elements("css selector", "[data-model='clip']")
    assert len(clip_elements) >= 4 + 1 + len(rows)
    assert not any(e.is_displayed() for e in clip_elements)
    assert all(c.is_displayed() for c in browser.find_elements("css selector", ".cell[data-model='wd14']"))
    clip_box.click()
    assert all(c.is_displayed() for c in browser.find_elements("css selector", ".cell[data-model='clip']"))

    # Tag search: case and "_" do not matter; only images with the tag stay; the tag is highlighted.
    set_search(browser, "GRAFFITI")
    assert visible_images(browser) == ["img-0", "img-1"]
    hits = browser.find_elements("css selector", "li.tag.hit")
    assert hits and all("graffiti" in h.get_property("textContent") for h in hits)
    assert browser.find_element("css selector", "#shown-count").text == "2 of 4 image(s) shown"
    set_search(browser, "<b>bold")
    assert visible_images(browser) == ["img-0", "img-1"]
    set_search(browser, "broken_window")
    assert visible_images(browser) == ["img-0", "img-1", "img-2"]
    # ... restricted to the models shown: with wd14 and clip hidden, no image has "broken window".
    for model in ("wd14", "clip"):
        browser.find_element("css selector", f"input.f-model[value='{model}']").click()
    assert visible_images(browser) == []
    for model in ("wd14", "clip"):
        browser.find_element("css selector", f"input.f-model[value='{model}']").click()
    set_search(browser, "")
    assert len(visible_images(browser)) == 4 and browser.find_elements("css selector", "li.tag.hit") == []

    # Status filter: only bad_image checked -> only the unreadable file's image is left.
    for box in browser.find_elements("css selector", "input.f-status"):
        if box.get_attribute("value") != "bad_image":
            box.click()
    assert visible_images(browser) == ["img-3"]
    assert severe_console(browser) == []


@pytest.mark.adapter
def test_analyze_writes_a_self_contained_html_report(browser: Any, tiny_model: Any, tmp_path: Path) -> None:
    """`mltag analyze --format html --out` on two sample photos with the tiny wd14: renders, fetches nothing."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("brick.png", "rocket.jpg"):
        shutil.copy(SAMPLES / name, folder / name)
    report = tmp_path / "report.html"
    args = [
        "analyze",
        str(folder),
        "--models",
        "wd14",
        f"--weights=wd14={tiny_model('wd14')}",
        "--offline",
        "--format",
        "html",
        "--out",
        str(report),
    ]
    proc = mltag(*args, "--no-store")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and f"wrote {report}" in proc.stderr
    assert not (folder / ".mltag").exists(), "--no-store writes no store"
    html = report.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I), "no remote src/href"

    open_report(browser, report)
    screenshot(browser, "html-report-analyze.png")
    assert all(n.startswith("data:") for n in fetched(browser))
    articles = browser.find_elements("css selector", "article.image")
    assert sorted(a.find_element("css selector", ".path").text for a in articles) == sorted(
        str(folder / n) for n in ("brick.png", "rocket.jpg")
    )
    for article in articles:
        thumb = article.find_element("css selector", "img.thumb")
        assert browser.execute_script("return arguments[0].naturalWidth", thumb) > 0
        cells = article.find_elements("css selector", ".cell")
        assert [c.get_attribute("data-model") for c in cells] == ["wd14"]
        assert cells[0].get_attribute("data-status") in SUCCESS
    assert severe_console(browser) == []


@pytest.mark.adapter
def test_report_html_renders_a_stored_run(browser: Any, tiny_model: Any, tmp_path: Path) -> None:
    """`mltag report --html FILE` renders what `mltag analyze` stored, without running a model."""
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(SAMPLES / "coffee.png", folder / "coffee.png")
    proc = mltag(
        "analyze",
        str(folder),
        "--models",
        "wd14",
        f"--weights=wd14={tiny_model('wd14')}",
        "--offline",
        "--format",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    assert (Path(os.environ["MLTAG_HOME"]) / "results.sqlite").exists() and not (folder / ".mltag").exists()
    report = tmp_path / "stored.html"
    proc = mltag("report", str(folder), "--html", str(report))
    assert proc.returncode == 0, proc.stderr
    open_report(browser, report)
    (article,) = browser.find_elements("css selector", "article.image")
    assert article.find_element("css selector", ".path").text == str(folder / "coffee.png")
    assert (
        browser.execute_script("return arguments[0].naturalWidth", article.find_element("css selector", "img.thumb"))
        > 0
    )
    assert [c.get_attribute("data-model") for c in article.find_elements("css selector", ".cell")] == ["wd14"]
    assert len(browser.find_elements("css selector", "#heatmap td.hm")) > 0, "the comparison is made for the report"
    assert severe_console(browser) == []


def test_a_large_report_draws_images_as_the_reader_scrolls(browser: Any, tmp_path: Path) -> None:
    """At archive size the page draws a batch of images, more on scrolling; the filters and the count
    work over every image, drawn or not."""
    document = make_document(tmp_path / "photos")
    first = document["images"][0]
    document["images"] = [
        {**first, "sha256": f"{i:064x}", "results": {m: c.copy() for m, c in first["results"].items()}}
        for i in range(150)
    ]
    document["images"][130]["results"]["clip"]["tags"] = [
        {"name": "Needle_in_a_haystack", "score": 0.9},
        {"name": "no number", "score": float("nan")},
    ]
    report = tmp_path / "large.html"
    report.write_text(to_html(document, compare(document)), encoding="utf-8")
    open_report(browser, report)
    drawn = len(browser.find_elements("css selector", "article.image"))
    assert 0 < drawn < 150, "only the first batches are drawn at load"
    assert browser.find_element("css selector", "#shown-count").text == "150 of 150 image(s) shown"
    set_search(browser, "needle in")
    assert visible_images(browser) == ["img-130"], "an image not drawn yet is found by the tag search"
    assert browser.find_element("css selector", "#shown-count").text == "1 of 150 image(s) shown"
    scores = {
        li.find_element("css selector", ".text").text: li.find_element("css selector", ".score").text
        for li in browser.find_elements("css selector", "#img-130 .cell[data-model='clip'] li.tag")
    }
    assert scores == {"Needle_in_a_haystack": "0.900", "no number": "–"}, "a NaN score is shown as a dash"
    set_search(browser, "")
    for _ in range(40):
        if len(browser.find_elements("css selector", "article.image")) == 150:
            break
        browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
        browser.execute_script("return new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))")
    articles = browser.find_elements("css selector", "article.image")
    assert [a.get_attribute("id") for a in articles] == [f"img-{i}" for i in range(150)], "scrolling draws them all"
    assert (
        browser.execute_script(
            "return arguments[0].naturalWidth", articles[-1].find_element("css selector", "img.thumb")
        )
        > 0
    ), "the last block's thumbnails decode too"
    assert severe_console(browser) == []


def test_timing_table_shows_an_endpoints_tokens_and_retries(browser: Any, tmp_path: Path) -> None:
    """A served model's token usage and retries (issue 23) as the rendered timing table's columns; a model
    that reports none shows a dash there."""
    document = make_document(tmp_path / "photos")
    for i, image in enumerate(document["images"]):  # florence2's cells as an endpoint reports them
        image["results"]["florence2"]["raw"] = {
            "usage": {"prompt_tokens": 100 + i, "completion_tokens": 20},
            "retries": i % 2,
        }
    comparison = compare(document)
    report = tmp_path / "report.html"
    report.write_text(to_html(document, comparison), encoding="utf-8")
    open_report(browser, report)
    head = [th.text for th in browser.find_elements("css selector", "table.timing-table thead th")]
    assert head[-3:] == ["tokens in", "tokens out", "retries"]
    row = [td.text for td in browser.find_elements("css selector", "table.timing-table tr[data-model='florence2'] td")]
    n = len(document["images"])
    assert row[-3:] == [str(sum(100 + i for i in range(n))), str(20 * n), str(sum(i % 2 for i in range(n)))]
    wd14 = [td.text for td in browser.find_elements("css selector", "table.timing-table tr[data-model='wd14'] td")]
    assert wd14[-3:] == ["–", "–", "–"] and severe_console(browser) == []
