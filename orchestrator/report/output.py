"""Where an output goes: stdout, or a file written atomically.

A file is written to a temporary name beside it and renamed over the target only once complete,
so a crash, a Ctrl-C or a full disk never leaves a truncated JSON or half a report where the last
good one was. Write errors become OutputError, whose message names the fix.
"""

from __future__ import annotations

import errno
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from orchestrator.errors import OutputError


def _explain(out: Path, exc: OSError) -> OutputError:
    why = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
    return OutputError(
        f"cannot write {out}: {why}; free some space or pass another --out (the results are in "
        "the results store: `mltag report` writes them again without running any model)"
    )


@contextmanager
def open_output(out: Path | None) -> Iterator[IO[str]]:
    """stdout (out=None), or a text file at `out` that appears only when complete."""
    if out is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    out = Path(out)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent or Path("."))
    except OSError as exc:
        raise _explain(out, exc) from exc
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # as a plain open() would have made it (mkstemp makes 0600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        _discard(tmp)
        raise _explain(out, exc) from exc
    except BaseException:
        _discard(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _discard(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
