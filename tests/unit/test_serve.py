"""`mltag serve`'s app through Starlette's TestClient (httpx): grid pages and filters, one photo, labels,
the ranking, thumbnails, and the safety checks (Host, token, same origin, no path from a request)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from orchestrator.compare import Normaliser
from orchestrator.paths import PROJECT_ROOT
from orchestrator.serve.app import build_app
from orchestrator.serve.server import prepare
from tests.serve_store import HOSTILE, photo_store
from tests.support import mltag

HOST, PORT = "127.0.0.1", 8765
BASE = f"http://{HOST}:{PORT}"


@pytest.fixture()
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    db, images = photo_store(tmp_path / "store.sqlite", tmp_path / "photos")
    served = prepare(db, None, Normaliser(), cache=tmp_path / "cache", who="tester")
    client = TestClient(build_app(served, HOST, PORT), base_url=BASE)
    yield {"db": db, "images": images, "served": served, "client": client, "tmp": tmp_path}
    assert served.queue is not None and served.queue.wait(60), "the queue's thread ends before the store closes"
    served.thumbs.close()
    served.index.close()
    db.close()


def _post(client: TestClient, token: str, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, json=body, headers={"X-Mltag-Token": token, "Origin": BASE})


def test_only_serve_imports_the_web_stack() -> None:
    code = (
        "import sys, orchestrator.cli; "
        "print([m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'httpx', 'anyio')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_grid_pages_cover_every_photo_once_in_path_order(world: dict[str, Any]) -> None:
    client = world["client"]
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = client.get("/api/images", params={"limit": 5, **({"cursor": cursor} if cursor else {})}).json()
        assert page["total"] == (12 if cursor is None else None) and len(page["items"]) <= 5
        seen += [item["path"] for item in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert len(seen) == 12 and seen == sorted(seen)
    assert set(seen) == {str(img.path) for img in world["images"]}


def test_filters_tag_status_model_folder_and_sorts(world: dict[str, Any]) -> None:
    client, images = world["client"], world["images"]
    everything = client.get("/api/images", params={"limit": 100}).json()["items"]
    rust = client.get("/api/images", params={"tag": "rust", "limit": 100}).json()
    assert 0 < rust["total"] < 12
    chips = {
        item["sha256"]: {c["tag"] for c in client.get(f"/api/photo/{item['sha256']}").json()["chips"]}
        for item in everything
    }
    assert {i["sha256"] for i in rust["items"]} == {sha for sha, tags in chips.items() if "rust" in tags}
    assert client.get("/api/images", params={"tag": "Rust_"}).json()["total"] == rust["total"], "tags are normalised"
    # photo 0 is the one whose noisy cell timed out (tests/serve_store.py)
    failed = client.get("/api/images", params={"status": "failed"}).json()
    assert [i["sha256"] for i in failed["items"]] == [images[0].sha256]
    assert client.get("/api/images", params={"status": "failed", "model": "good"}).json()["total"] == 0
    hall = client.get("/api/images", params={"folder": str(world["tmp"] / "photos" / "hall")}).json()
    assert hall["total"] == 6 and all("/hall/" in i["path"] for i in hall["items"])
    worst = client.get("/api/images", params={"sort": "disagreement", "limit": 100}).json()["items"]
    values = [i["agreement"] for i in worst]
    assert values == sorted(values)
    tags = client.get("/api/tags", params={"q": "ru"}).json()
    assert tags[0] == {"tag": "rust", "images": rust["total"]}
    assert client.get("/api/images", params={"cursor": "not json"}).status_code == 400


def test_photo_view_escapes_model_strings_and_navigates(world: dict[str, Any]) -> None:
    client, images = world["client"], world["images"]
    sha = images[0].sha256
    page = client.get(f"/photo/{sha}")
    assert page.status_code == 200
    assert HOSTILE not in page.text and "&lt;img src=x onerror=" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    data = client.get(f"/api/photo/{sha}").json()
    assert [c["model"] for c in data["cells"]] == ["good", "noisy", "cap"]
    assert [c["status"] for c in data["cells"]] == ["ok", "timeout", "ok"]
    ordered = sorted(images, key=lambda i: str(i.path))
    second = client.get(f"/api/photo/{ordered[1].sha256}").json()["near"]
    assert second == {"previous": ordered[0].sha256, "next": ordered[2].sha256}


def test_labels_are_written_through_the_store_and_ranked_like_mltag_eval(world: dict[str, Any]) -> None:
    client, db, served, images = world["client"], world["db"], world["served"], world["images"]
    token = served.token
    for img in images[1:4]:
        chips = client.get(f"/api/photo/{img.sha256}").json()["chips"]
        for chip in chips[:2]:
            assert (
                _post(
                    client, token, "/api/label", {"sha256": img.sha256, "tag": chip["tag"], "verdict": "yes"}
                ).status_code
                == 200
            )
        assert (
            _post(
                client, token, "/api/label", {"sha256": img.sha256, "tag": chips[2]["tag"], "verdict": "no"}
            ).status_code
            == 200
        )
        assert _post(client, token, "/api/done", {"sha256": img.sha256, "done": True}).status_code == 200
    assert (
        _post(client, token, "/api/label", {"sha256": images[1].sha256, "tag": "Brick Walls", "verdict": "yes"}).json()[
            "tag"
        ]
        == "brick wall"
    )
    # undo: no verdict at all
    _post(client, token, "/api/label", {"sha256": images[4].sha256, "tag": "rust", "verdict": "yes"})
    _post(client, token, "/api/label", {"sha256": images[4].sha256, "tag": "rust", "verdict": None})
    assert db.labels_of(images[4].sha256).verdicts == {}
    labels = db.labels_of(images[1].sha256)
    assert labels.done and labels.done_by == "tester" and "brick wall" in labels.yes_tags
    assert client.get("/api/images", params={"labelled": "done"}).json()["total"] == 3
    assert client.get("/api/images", params={"labelled": "unlabelled"}).json()["total"] == 9
    ranking = client.get("/api/ranking").json()
    assert ranking["labelled"] == 3
    out = mltag("eval", "--store", str(db.path), "--format", "json")
    assert out.returncode == 0, out.stderr
    evaluated = json.loads(out.stdout)
    assert [(m["model"], m["own"], m["best"], m["intervals"]) for m in ranking["models"]] == [
        (m["model"], m["own"], m["best"], m["intervals"]) for m in evaluated["models"]
    ]
    assert ranking["leader"] == evaluated["leader"] and ranking["models"][0]["intervals"]["own"]["f1"]
    assert _post(client, token, "/api/done", {"sha256": images[1].sha256, "done": False}).status_code == 200
    assert client.get("/api/ranking").json()["labelled"] == 2


def test_thumbnails_come_from_the_cache_folder_never_the_archive(world: dict[str, Any]) -> None:
    client, images, tmp = world["client"], world["images"], world["tmp"]
    before = sorted(p.name for p in (tmp / "photos").rglob("*"))
    shot = client.get(f"/thumb/{images[1].sha256}/256")
    assert shot.status_code == 200 and shot.headers["content-type"] == "image/jpeg" and shot.content[:2] == b"\xff\xd8"
    assert list((tmp / "cache" / "thumbnails").rglob(f"{images[1].sha256}-256.jpg"))
    assert sorted(p.name for p in (tmp / "photos").rglob("*")) == before, "nothing written beside the photos"
    gone = client.get(f"/thumb/{images[-1].sha256}/256")  # the vanished photo: a placeholder, its results stay
    assert gone.headers["content-type"].startswith("image/svg+xml")
    assert "not found" in gone.headers["x-mltag-thumb-error"]
    assert client.get(f"/api/photo/{images[-1].sha256}").json()["cells"][0]["status"] == "ok"
    assert client.get(f"/thumb/{images[1].sha256}/4000").status_code == 404, "only the app's own sizes"


def test_a_cached_thumbnail_asked_for_again_and_again_never_blocks(world: dict[str, Any]) -> None:
    """A cached thumbnail's job is done before its callback is added; the callback then runs at once in
    the asking thread. It once took a lock that thread held: the app froze on the first cached tile."""
    import threading

    from orchestrator.serve.thumbs import Thumbnails

    thumbs, image = Thumbnails(world["tmp"] / "cache" / "thumbnails"), world["images"][1]
    answers: list[bytes | None] = []

    def ask() -> None:
        for _ in range(200):
            answers.append(thumbs.get(image.sha256, image.path, 256).result(timeout=10)[0])

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    asking.join(timeout=30)
    assert not asking.is_alive(), "Thumbnails.get blocked"
    assert len(answers) == 200 and len(set(answers)) == 1 and answers[0]
    thumbs.close()


@pytest.mark.parametrize(
    "url",
    [
        "/thumb/../../../etc/passwd",
        "/thumb/%2e%2e%2f%2e%2e%2fetc%2fpasswd/256",
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/static/..%2f..%2fstore%2fdb.py",
        "/photo/..%2f..%2fetc%2fpasswd",
        "/api/photo/" + "0" * 64,
        "/thumb/" + "f" * 64 + "/256",
        "/static//etc/passwd",
    ],
)
def test_no_path_is_taken_from_a_request(world: dict[str, Any], url: str) -> None:
    response = world["client"].get(url)
    assert response.status_code == 404, (url, response.status_code, response.text[:200])
    assert b"root:" not in response.content and b"import" not in response.content


def test_changes_need_the_token_and_the_same_origin(world: dict[str, Any]) -> None:
    client, served, sha = world["client"], world["served"], world["images"][1].sha256
    body = {"sha256": sha, "tag": "rust", "verdict": "yes"}
    assert client.post("/api/label", json=body, headers={"Origin": BASE}).status_code == 403, "no token"
    assert client.post("/api/label", json=body, headers={"X-Mltag-Token": "guess", "Origin": BASE}).status_code == 403
    foreign = client.post(
        "/api/label", json=body, headers={"X-Mltag-Token": served.token, "Origin": "http://evil.example"}
    )
    assert foreign.status_code == 403
    assert client.post("/api/label", json=body, headers={"X-Mltag-Token": served.token}).status_code == 403, (
        "no Origin nor Referer"
    )
    assert world["db"].labels_of(sha).verdicts == {}
    rebinding = client.get("/api/images", headers={"Host": "evil.example:8765"})
    assert rebinding.status_code == 421
    referer = client.post(
        "/api/label", json=body, headers={"X-Mltag-Token": served.token, "Referer": f"{BASE}/photo/{sha}"}
    )
    assert referer.status_code == 200 and world["db"].labels_of(sha).verdicts["rust"].yes


def test_a_non_local_host_needs_the_token_for_everything(world: dict[str, Any]) -> None:
    served = world["served"]
    served.loopback = False
    client = TestClient(build_app(served, "192.0.2.7", 9000), base_url="http://192.0.2.7:9000")
    assert client.get("/").status_code == 403
    assert client.get("/api/images").status_code == 403
    assert client.get(f"/thumb/{world['images'][1].sha256}/256").status_code == 403
    first = client.get("/", params={"token": served.token})
    assert first.status_code == 200 and "mltag_token" in first.headers["set-cookie"]
    assert client.get("/api/images").status_code == 200, "then the cookie carries it"
    by_name = client.get("/api/images", headers={"Host": "photos.lan:9000"})
    assert by_name.status_code == 200, "beyond loopback the machine has many names: the token guards it"


def test_a_missing_store_is_the_clis_one_line_error(tmp_path: Path) -> None:
    out = mltag("serve", "--store", str(tmp_path / "nothing.sqlite"))
    assert out.returncode == 2
    assert "no results store at" in out.stderr and "Traceback" not in out.stderr


def test_label_next_follows_the_stores_queue(world: dict[str, Any]) -> None:
    from orchestrator.store.documents import queue_from_store

    client, served, db = world["client"], world["served"], world["db"]
    assert served.queue is not None and served.queue.wait(60)
    expected = [c.sha256 for c in queue_from_store(db, Normaliser(), served.index.models)]
    assert len(expected) >= 2
    first = client.get("/api/next").json()["sha256"]
    assert first == expected[0]
    assert client.get("/api/next", params={"after": first}).json()["sha256"] == expected[1]
    assert _post(client, served.token, "/api/done", {"sha256": first, "done": True}).status_code == 200
    assert client.get("/api/next").json()["sha256"] == expected[1], "a photo marked done leaves the queue"


@pytest.mark.parametrize("sort", ["path", "disagreement", "agreement", "consensus"])
def test_every_sort_pages_through_every_photo_once_in_order(world: dict[str, Any], sort: str) -> None:
    client = world["client"]
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = client.get("/api/images", params={"limit": 5, "sort": sort, **({"cursor": cursor} if cursor else {})})
        items += page.json()["items"]
        cursor = page.json()["next"]
        if cursor is None:
            break
    assert len({i["sha256"] for i in items}) == len(items) == 12
    key = {
        "path": lambda i: i["path"],
        "disagreement": lambda i: i["agreement"],
        "agreement": lambda i: -i["agreement"],
        "consensus": lambda i: -i["consensus"],
    }[sort]
    assert [key(i) for i in items] == sorted(key(i) for i in items)
    # next / previous on the photo page follow the same order
    middle = items[5]["sha256"]
    near = client.get(f"/api/photo/{middle}", params={"sort": sort}).json()["near"]
    assert near == {"previous": items[4]["sha256"], "next": items[6]["sha256"]}


def test_a_file_name_that_is_not_utf8_gets_its_thumbnail(tmp_path: Path) -> None:
    import os

    from PIL import Image

    from orchestrator.images import hash_file
    from tests.serve_store import fill, new_store

    folder = tmp_path / "photos"
    folder.mkdir()
    odd = os.path.join(os.fsencode(folder), b"caf\xe9.jpg")  # Latin-1 bytes: not UTF-8
    Image.new("RGB", (64, 48), (200, 30, 30)).save(os.fsdecode(odd), "JPEG")
    db = new_store(tmp_path / "store.sqlite")
    img = hash_file(Path(os.fsdecode(odd)))
    fill(db, [img])
    served = prepare(db, None, Normaliser(), cache=tmp_path / "cache", who="t")
    try:
        client = TestClient(build_app(served, HOST, PORT), base_url=BASE)
        item = client.get("/api/images").json()["items"][0]
        assert item["name"] == "caf\\xe9.jpg"  # shown as text, the exact bytes kept for reading the file
        shot = client.get(f"/thumb/{img.sha256}/256")
        assert shot.headers["content-type"] == "image/jpeg"
    finally:
        assert served.queue is not None and served.queue.wait(60)
        served.thumbs.close()
        served.index.close()
        db.close()


def test_paths_limit_the_app_to_the_photos_under_them(world: dict[str, Any]) -> None:
    db, tmp = world["db"], world["tmp"]
    served = prepare(db, [tmp / "photos" / "yard"], Normaliser(), cache=tmp / "cache", who="t")
    try:
        client = TestClient(build_app(served, HOST, PORT), base_url=BASE)
        page = client.get("/api/images", params={"limit": 100}).json()
        assert page["total"] == 6 and all("/yard/" in i["path"] for i in page["items"])
        hall = next(i for i in world["images"] if "/hall/" in str(i.path))
        assert client.get(f"/api/photo/{hall.sha256}").status_code == 404, "a photo outside PATHS is not served"
    finally:
        assert served.queue is not None and served.queue.wait(60)
        served.thumbs.close()
        served.index.close()


def test_a_store_locked_by_another_writer_is_said_not_crashed(world: dict[str, Any]) -> None:
    import sqlite3

    client, served, db, sha = world["client"], world["served"], world["db"], world["images"][1].sha256
    db.busy_timeout_s = 0.2
    db._db.execute("PRAGMA busy_timeout = 200")  # the test's store: give up after 0.2 s, not 30
    other = sqlite3.connect(db.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        reply = _post(client, served.token, "/api/label", {"sha256": sha, "tag": "rust", "verdict": "yes"})
        assert reply.status_code == 503 and "locked by another process" in reply.json()["error"]
        assert client.get("/api/images").status_code == 200, "reading goes on (WAL)"
    finally:
        other.execute("ROLLBACK")
        other.close()
