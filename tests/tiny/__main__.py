"""Several tiny builds of one env in one process: `python -m tests.tiny FAMILY=OUT_DIR ...` (that env's python).

Importing torch and transformers is most of a build's time (~3.5 of ~4.5 CPU-seconds); this pays it
once. Each build then runs in a child forked from this process (as many at once as there are cores,
the first given first), so what one builder changes (torch's seed, a class it registers, a module it
imports) never reaches the next. A lone build is not preloaded for (it would gain nothing): so a builder
that must set environment variables before transformers is imported, which declares `ALONE = True`, is
given here alone (tests/tiny_models.py) and imports what it needs itself.

For each build, as it ends, one line on stdout: `tests.tiny: built FAMILY` or `tests.tiny: failed FAMILY`
(its traceback on stderr, after `tests.tiny: FAMILY:`). The exit status is 1 when any failed.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path

from tests.tiny import BATCH_PREFIX

PRELOAD = ("torch", "transformers", "PIL.Image")  # what every builder of an env imports first


def _start(family: str, out: Path) -> int:
    """Fork a child that builds `family` into `out` and exits; returns its pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: build, then leave without running the parent's exit handlers
        code = 1
        try:
            out.mkdir(parents=True, exist_ok=True)
            importlib.import_module(f"tests.tiny.{family}").build(out)
            code = 0
        except BaseException:  # noqa: BLE001 - reported on stderr, the parent goes on with the others
            print(f"{BATCH_PREFIX}{family}:", file=sys.stderr)
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def main(argv: list[str]) -> int:
    if not argv or not all("=" in a for a in argv):
        print("usage: python -m tests.tiny FAMILY=OUT_DIR [FAMILY=OUT_DIR ...]", file=sys.stderr)
        return 2
    pending = [(family, Path(out)) for family, out in (a.split("=", 1) for a in argv)]
    for name in PRELOAD if len(pending) > 1 else ():
        try:
            importlib.import_module(name)
        except ImportError:  # an env without transformers (onnx, slim) builds without it
            pass
    jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    running: dict[int, str] = {}
    failed = 0
    while pending or running:
        while pending and len(running) < jobs:  # the first one given (the one a test waits for) starts first
            family, out = pending.pop(0)
            running[_start(family, out)] = family
        pid, status = os.wait()
        ok = os.waitstatus_to_exitcode(status) == 0
        failed += not ok
        print(f"{BATCH_PREFIX}{'built' if ok else 'failed'} {running.pop(pid)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
