"""Length-prefixed msgpack frames: MAGIC (2 bytes) + body length (4 bytes, big-endian) + body.

The magic turns stray bytes on the wire (a library printing to stdout before the runner hid
fd 1) into a clear error instead of a nonsense length. Lengths count encoded bytes and are
bounded before anything is buffered.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import msgpack

MAGIC = b"MT"
HEADER = struct.Struct(">2sI")
HEADER_SIZE = HEADER.size
# A batch of 20 MB JPEGs fits easily; anything larger is a bug or garbage.
MAX_FRAME = 512 * 1024 * 1024


class FrameError(Exception):
    """The byte stream is not a valid frame sequence (bad magic, oversized, undecodable)."""


class FrameEOF(FrameError):
    """The stream ended: cleanly between frames (`partial` False) or inside one (True)."""

    def __init__(self, message: str, partial: bool) -> None:
        super().__init__(message)
        self.partial = partial


def encode_frame(obj: Any, max_frame: int = MAX_FRAME) -> bytes:
    body: bytes = msgpack.packb(obj, use_bin_type=True)
    if len(body) > max_frame:
        raise FrameError(f"frame of {len(body)} bytes exceeds the {max_frame}-byte limit")
    return HEADER.pack(MAGIC, len(body)) + body


def parse_header(header: bytes, max_frame: int = MAX_FRAME) -> int:
    """Validate a 6-byte header and return the body length."""
    magic: bytes
    length: int
    magic, length = HEADER.unpack(header)
    if magic != MAGIC:
        raise FrameError(
            f"not a protocol frame: the stream starts with {header!r} (something wrote to the protocol stream)"
        )
    if length > max_frame:
        raise FrameError(f"frame announces {length} bytes, over the {max_frame}-byte limit")
    return length


def decode_body(body: bytes) -> Any:
    try:
        return msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise FrameError(f"undecodable frame body: {exc}") from exc


def read_frame(read_exact: Callable[[int], bytes], max_frame: int = MAX_FRAME) -> Any:
    """Read one frame with a blocking `read_exact(n)` that returns fewer bytes only at EOF."""
    header = read_exact(HEADER_SIZE)
    if len(header) == 0:
        raise FrameEOF("end of stream", partial=False)
    if len(header) < HEADER_SIZE:
        raise FrameEOF("stream ended inside a frame header", partial=True)
    length = parse_header(header, max_frame)
    body = read_exact(length)
    if len(body) < length:
        raise FrameEOF(f"stream ended inside a frame ({len(body)} of {length} bytes)", partial=True)
    return decode_body(body)
