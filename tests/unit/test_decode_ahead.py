"""Decoding during the load (runners/_decode_ahead.py): photos read before the load is over are
decoded on a thread at the adapter's expected size; `take` hands one to infer only when it was
decoded at the size the loaded adapter asks for, so the result is the one infer would decode."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
from PIL import Image, ImageChops

from runners._decode_ahead import DecodeAhead, take
from runners._images import decode
from runners.base import longest_side_need

STORED = (1600, 1200)


def _jpeg(size: tuple[int, int] = STORED) -> bytes:
    buf = io.BytesIO()
    Image.radial_gradient("L").resize(size).convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _infer(*names: str, data: bytes | None = None, **options: Any) -> dict[str, Any]:
    payload = _jpeg() if data is None else data
    return {
        "id": 1,
        "op": "infer",
        "options": options,
        "images": [{"id": n, "name": n, "data": payload} for n in names],
    }


def _side(side: int) -> Any:
    return lambda width, height, options=None: longest_side_need(width, height, side)


def _wait(request: dict[str, Any]) -> None:
    for item in request["images"]:
        if "_early" in item:
            item["_early"].result(timeout=30)


def test_offered_before_the_load_is_decoded_at_the_expected_size_and_taken() -> None:
    ahead = DecodeAhead()
    request = _infer("a.jpg", "b.jpg")
    ahead.offer(request)  # read while hello was being answered
    ahead.begin(_side(200))
    _wait(request)
    ahead.end()
    item = request["images"][0]
    early = take(item, _side(200))
    assert early is not None and early.image().size == (200, 150)  # 1/8 of 1600 x 1200
    fresh = decode("a.jpg", "a.jpg", item["data"], need=_side(200))
    assert early.info == fresh.info
    assert ImageChops.difference(early.image(), fresh.image()).getbbox() is None, "the same pixels"
    assert "_early" not in item, "taken once"


def test_another_size_than_expected_is_decoded_again() -> None:
    ahead = DecodeAhead()
    request = _infer("a.jpg")
    ahead.begin(_side(200))
    ahead.offer(request)  # read during the load
    _wait(request)
    ahead.end()
    assert take(request["images"][0], _side(400)) is None, "400 needs 1/4, the early decode is 1/8"


def test_the_full_size_path_never_takes_an_early_decode() -> None:
    ahead = DecodeAhead()
    request = _infer("a.jpg")
    ahead.begin(_side(200))
    ahead.offer(request)
    _wait(request)
    ahead.end()
    assert take(request["images"][0], None) is None


def test_nothing_is_decoded_after_the_load() -> None:
    ahead = DecodeAhead()
    ahead.begin(_side(200))
    ahead.end()
    request = _infer("late.jpg")
    ahead.offer(request)
    assert "_early" not in request["images"][0]
    assert take(request["images"][0], _side(200)) is None


def test_decodes_not_started_by_the_end_of_the_load_are_left_to_infer() -> None:
    gate = threading.Event()
    calls: list[int] = []

    def expected(width: int, height: int, options: dict[str, Any]) -> tuple[int, int]:
        calls.append(width)
        gate.wait(30)  # the first decode is still under way when the load ends
        return longest_side_need(width, height, 200)

    ahead = DecodeAhead()
    request = _infer("a.jpg", "b.jpg", "c.jpg")
    for item, width in zip(request["images"], (1600, 1200, 800), strict=True):  # the width tells them apart
        item["data"] = _jpeg((width, width * 3 // 4))
    ahead.offer(request)
    ahead.begin(expected)
    while not calls:
        threading.Event().wait(0.01)
    ahead.end()
    gate.set()
    first, *rest = request["images"]
    assert take(first, _side(200)) is not None, "the decode under way is waited for and used"
    assert [take(item, _side(200)) for item in rest] == [None, None], "cancelled: infer decodes them"
    assert set(calls) == {1600}, "only a.jpg was decoded ahead"


def test_a_bad_image_is_decoded_again_by_infer() -> None:
    ahead = DecodeAhead()
    request = _infer("bad.jpg", data=_jpeg()[:200])
    ahead.begin(_side(200))
    ahead.offer(request)
    _wait(request)
    ahead.end()
    assert take(request["images"][0], _side(200)) is None


def test_only_infer_requests_with_image_bytes_are_decoded() -> None:
    ahead = DecodeAhead()
    ahead.begin(_side(200))
    text_only: dict[str, Any] = {
        "id": 2,
        "op": "infer",
        "options": {},
        "images": [{"id": "t", "name": "t", "context": {}}],
    }
    for request in ({"id": 1, "op": "load", "spec": {}}, text_only, None, "garbage"):
        ahead.offer(request)
    assert "_early" not in text_only["images"][0]
    ahead.end()


def test_the_requests_max_pixels_applies_to_the_early_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # decode sets it: restored after
    ahead = DecodeAhead()
    request = _infer("a.jpg", max_pixels=1000)
    ahead.begin(_side(200))
    ahead.offer(request)
    _wait(request)
    ahead.end()
    assert take(request["images"][0], _side(200)) is None, "refused as a bomb ahead: infer says so itself"
