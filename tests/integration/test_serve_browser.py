"""`mltag serve` in a real browser: the command as a user starts it, driven by headless Chromium.

Open the grid, filter by a tag, open a photo, label it by keyboard only, mark it done, see the ranking
panel change, and check the labels landed in the store. Screenshots are kept as test artefacts
($MLTAG_TEST_ARTIFACTS, else .cache/test-artifacts/).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.paths import PROJECT_ROOT
from orchestrator.store import ResultStore
from tests.integration.test_html_report import artifacts_dir, browser, severe_console  # noqa: F401 (a fixture)
from tests.serve_store import photo_store

pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    db, images = photo_store(tmp_path / "store.sqlite", tmp_path / "photos")
    db.close()
    port = _free_port()
    env = {**os.environ, "MLTAG_CACHE": str(tmp_path / "cache"), "MLTAG_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "serve",
            "--store",
            str(tmp_path / "store.sqlite"),
            "--port",
            str(port),
            "--who",
            "browser-test",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    url = None
    deadline = time.monotonic() + 60
    lines = []
    while url is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        found = re.search(r"open (http://\S+)", line)
        url = found.group(1) if found else None
    assert url == f"http://127.0.0.1:{port}/", "".join(lines)
    try:
        yield {"url": url, "images": images, "store": tmp_path / "store.sqlite"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait(condition: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the page")


def _keys(chrome: Any, *keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    for key in keys:
        ActionChains(chrome).send_keys(key).perform()
        time.sleep(0.15)  # each key's write goes out before the next (a person types no faster)


def test_browse_filter_label_by_keyboard_and_see_the_ranking(browser: Any, server: dict[str, Any]) -> None:  # noqa: F811
    from selenium.webdriver.common.keys import Keys

    base, images = server["url"], server["images"]
    browser.set_window_size(1500, 1000)
    browser.get(base)
    tiles = _wait(lambda: browser.find_elements("css selector", "#grid a.tile"))
    assert len(tiles) == 12
    _wait(
        lambda: browser.execute_script(
            "return [...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)"
        )
    )
    assert browser.execute_script("return typeof window.__pwned") == "undefined"

    # filter by a tag (typed, then Enter): the grid shows exactly the API's photos with it
    with urllib.request.urlopen(base + "api/images?tag=rust&limit=100") as reply:
        expected = {i["sha256"] for i in json.load(reply)["items"]}
    assert 0 < len(expected) < 12
    box = browser.find_element("css selector", "#f-tag")
    box.send_keys("rust", Keys.ENTER)
    _wait(lambda: len(browser.find_elements("css selector", "#grid a.tile")) == len(expected))
    shown = {t.get_attribute("data-sha256") for t in browser.find_elements("css selector", "#grid a.tile")}
    assert shown == expected and browser.find_element("css selector", "#count").text == str(len(expected))
    assert "tag=rust" in browser.current_url
    browser.save_screenshot(str(artifacts_dir() / "serve-grid.png"))

    # open a photo: every model side by side; the ranking is empty
    browser.find_elements("css selector", "#grid a.tile")[0].click()
    _wait(lambda: "/photo/" in browser.current_url)
    sha = browser.current_url.split("/photo/")[1].split("?")[0]
    assert len(browser.find_elements("css selector", ".cell")) == 3
    assert not browser.find_element("css selector", "#ranking-table").is_displayed()
    chips = [c.get_attribute("data-tag") for c in browser.find_elements("css selector", "#chips .lchip")]
    assert len(chips) >= 3 and "rust" in chips
    assert browser.switch_to.active_element.get_attribute("data-tag") == chips[0], "the first chip has the focus"

    # keyboard only: yes, yes, no, move back and undo-free correction, add a tag, done
    _keys(browser, "y", "y", "n", Keys.ARROW_LEFT, "y")  # the third chip: no, then yes after all
    _keys(browser, Keys.ARROW_RIGHT, "y", "u")  # a yes on the fourth, undone
    _keys(browser, "a")
    assert browser.switch_to.active_element.get_attribute("id") == "add-tag"
    _keys(browser, "brick walls", Keys.ENTER)
    _wait(
        lambda: (
            "brick wall"
            in [c.get_attribute("data-tag") for c in browser.find_elements("css selector", "#chips .lchip")]
        )
    )
    browser.save_screenshot(str(artifacts_dir() / "serve-labelling.png"))
    _keys(browser, "d")
    _wait(lambda: sha not in browser.current_url)  # done: on to the next photo
    _wait(lambda: browser.find_element("css selector", "#ranking-table").is_displayed())
    note = browser.find_element("css selector", "#ranking-note").text
    assert note.startswith("1 photo(s) labelled done")
    rows = browser.find_elements("css selector", "#ranking-table tbody tr")
    assert {r.get_attribute("data-model") for r in rows} == {"good", "noisy", "cap"}
    assert all(re.fullmatch(r"\d\.\d\d", r.find_elements("css selector", "td")[1].text.split("\n")[0]) for r in rows)
    assert severe_console(browser) == [], "no script error and no Content-Security-Policy violation"

    with ResultStore(server["store"], create=False) as db:
        labels = db.labels_of(sha)
    assert labels.done and labels.done_by == "browser-test"
    truth = {chips[0], chips[1], chips[2], "brick wall"}
    assert set(labels.yes_tags) == truth
    assert chips[3] not in labels.verdicts, "the undone yes left no verdict"

    # label a second photo from the queue ("l"), then the ranking counts two
    _keys(browser, "l")
    _wait(
        lambda: (
            "queue=1" in browser.current_url
            and browser.execute_script(
                "return document.readyState === 'complete' && document.activeElement.classList.contains('lchip')"
            )
        )
    )
    _keys(browser, "y", "d")
    _wait(lambda: browser.find_element("css selector", "#ranking-note").text.startswith("2 photo(s)"))
    assert len({i.sha256 for i in images}) == 12
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1500, min(int(height) + 40, 3000))
    shot = artifacts_dir() / "serve-photo.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
