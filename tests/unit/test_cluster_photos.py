"""The cluster's photo shelf (orchestrator/cluster/photos.py): each photo put once for every model,
let go when every model is done with it, and never more than its limit held (no Ray needed: a
stand-in `put` counts the calls; tests/integration/test_cluster.py runs it on a real Ray)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.cluster.photos import PhotoShelf
from orchestrator.images import ImageRef


class FakeRay:
    def __init__(self) -> None:
        self.puts: list[bytes] = []

    def put(self, value: bytes) -> Any:
        self.puts.append(value)
        return ("ref", len(self.puts))


def photos(tmp_path: Path, n: int, size: int = 100) -> list[ImageRef]:
    out = []
    for i in range(n):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(bytes([i]) * size)
        out.append(ImageRef(path, f"{i:064x}", size))
    return out


def test_a_photo_is_put_once_for_every_model_and_let_go_when_all_are_done(tmp_path: Path) -> None:
    ray = FakeRay()
    shelf = PhotoShelf(ray, ["wd14", "clip"])
    images = photos(tmp_path, 3)
    shelf.expect("wd14", images)
    shelf.expect("clip", images)
    first = shelf.payload(images[0])
    assert shelf.payload(images[0]) == first and ray.puts == [images[0].read()]
    shelf.done("wd14", images[0])
    assert images[0].id in shelf.held, "clip has not had it yet"
    assert shelf.payload(images[0]) == first and len(ray.puts) == 1
    shelf.done("clip", images[0])
    assert not shelf.held and shelf.held_bytes == 0
    assert shelf.puts == 1


def test_a_model_that_has_not_said_what_it_sends_keeps_photos_held(tmp_path: Path) -> None:
    """The models' pools start one after another: a photo wd14 is done with waits for clip to say."""
    ray = FakeRay()
    shelf = PhotoShelf(ray, ["wd14", "clip"])
    images = photos(tmp_path, 2)
    shelf.expect("wd14", images)
    shelf.payload(images[0])
    shelf.done("wd14", images[0])
    assert images[0].id in shelf.held
    shelf.expect("clip", images[1:])  # clip had images[0] from the store already
    assert not shelf.held
    shelf.payload(images[1])
    shelf.leave("wd14")  # finished (or failed) without it
    assert images[1].id in shelf.held
    shelf.leave("clip")
    assert not shelf.held and shelf.puts == 2


def test_memory_stays_flat_when_one_model_runs_far_ahead(tmp_path: Path) -> None:
    """A fast model goes through every photo while a slow one has not started: at most `limit`
    bytes are held; the slow model's photos are put again (counted), never lost."""
    ray = FakeRay()
    shelf = PhotoShelf(ray, ["fast", "slow"], limit=1000)
    images = photos(tmp_path, 50)
    shelf.expect("fast", images)
    shelf.expect("slow", images)
    for image in images:
        shelf.payload(image)
        shelf.done("fast", image)
        assert shelf.held_bytes <= 1000
    assert shelf.most_held == 1000 and len(shelf.held) == 10
    for image in images:
        assert shelf.payload(image)["data"] is not None
        shelf.done("slow", image)
        assert shelf.held_bytes <= 1000
    # put again: the 40 let go while fast ran, and the oldest of the last ten (room for the first re-put)
    assert shelf.puts == 50 + 41 and not shelf.held and shelf.most_held == 1000


def test_close_lets_everything_go(tmp_path: Path) -> None:
    ray = FakeRay()
    shelf = PhotoShelf(ray, ["wd14", "clip"])
    images = photos(tmp_path, 3)
    for image in images:
        shelf.payload(image)
    assert len(shelf.held) == 3
    shelf.close()
    assert not shelf.held and shelf.held_bytes == 0
