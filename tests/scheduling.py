"""How `make test` shares the suite between its workers: pytest-xdist's `--dist loadfile` (a test file is
one unit of work, so its module-scoped fixtures, a loaded runner or a local Ray head, are set up once),
except the contract test, which is one unit per checkpoint, and those units go first.

Why: on a fresh clone the contract test is where each tiny model, and each env but the demo's, is first
built. As one unit it kept one worker busy for the whole of pytest (18 builds in a row, ~8 of 8.7 min)
while the other workers ran out of work before it ended.
"""

from __future__ import annotations

from typing import Any

from xdist.scheduler import LoadFileScheduling

CONTRACT = "tests/adapters/test_contract.py"


def unit_of(nodeid: str) -> str:
    """The unit of work (xdist's "scope") of a test: its file, or for the contract test its checkpoint."""
    path = nodeid.split("::", 1)[0]
    if path == CONTRACT and nodeid.endswith("]"):
        return f"{CONTRACT}[{nodeid.rsplit('[', 1)[1]}"
    return path


class Scheduling(LoadFileScheduling):
    """LoadFileScheduling with `unit_of` for its units; the contract's units first, then the files as
    loadfile orders them (most tests first)."""

    ordered = False

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)

    def _assign_work_unit(self, node: Any) -> None:
        if not self.ordered:  # the queue is complete before the first unit is handed out
            for unit in [u for u in self.workqueue if not u.startswith(CONTRACT)]:
                self.workqueue.move_to_end(unit)
            self.ordered = True
        super()._assign_work_unit(node)
