from __future__ import annotations

import io

import pytest

from schemas.framing import MAGIC, FrameEOF, FrameError, encode_frame, read_frame


def reader(data: bytes):
    stream = io.BytesIO(data)
    return stream.read


def test_round_trip_with_bytes_and_unicode() -> None:
    msg = {"id": 7, "op": "infer", "images": [{"id": "x", "name": "façade.jpg", "data": b"\xff\xd8\x00"}]}
    assert read_frame(reader(encode_frame(msg))) == msg


def test_two_frames_in_one_stream() -> None:
    read = reader(encode_frame({"id": 1}) + encode_frame({"id": 2}))
    assert read_frame(read) == {"id": 1} and read_frame(read) == {"id": 2}
    with pytest.raises(FrameEOF) as info:
        read_frame(read)
    assert info.value.partial is False


def test_eof_inside_a_frame_is_partial() -> None:
    data = encode_frame({"id": 1, "blob": b"x" * 100})
    for cut in (3, len(data) - 1):
        with pytest.raises(FrameEOF) as info:
            read_frame(reader(data[:cut]))
        assert info.value.partial is True


def test_bad_magic_names_the_stray_bytes() -> None:
    with pytest.raises(FrameError, match="Loadin"):
        read_frame(reader(b"Loading weights...\n"))


def test_oversized_frame_refused_before_reading_the_body() -> None:
    header = MAGIC + (10_000).to_bytes(4, "big")
    with pytest.raises(FrameError, match="over the 1000-byte limit"):
        read_frame(reader(header), max_frame=1000)
    with pytest.raises(FrameError, match="exceeds"):
        encode_frame({"blob": b"x" * 2000}, max_frame=1000)


def test_undecodable_body() -> None:
    body = b"\xc1"  # never used in msgpack
    with pytest.raises(FrameError, match="undecodable"):
        read_frame(reader(MAGIC + len(body).to_bytes(4, "big") + body))
