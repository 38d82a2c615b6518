"""Copies the runners' log files to stderr as they grow (`mltag run`, `analyze -v`)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rich.markup import escape

from orchestrator.cli.console import err


class LogFollower:
    """Follows every `*.log` in a folder on a thread until `stop()`; the last lines are printed on stop."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        offsets: dict[Path, int] = {}
        while True:
            stopping = self._stop.is_set()
            for log in sorted(self.dir.glob("*.log")):
                with open(log, "rb") as f:
                    f.seek(offsets.get(log, 0))
                    data = f.read()
                    offsets[log] = f.tell()
                for line in data.decode(errors="replace").splitlines():
                    err.print(f"[dim]{log.stem} |[/] {escape(line)}", highlight=False)
            if stopping:
                return
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=2)
