"""How `make test` shares the suite between its workers (pytest-xdist `--dist loadfile`, refined).

A test file is a unit of work by default: its module-scoped fixtures (a loaded runner, a tiny build, a
local Ray head) are set up once. Three refinements, all from the node ids the workers collected:

- `tests/adapters/test_contract.py` is one unit per checkpoint (its module-scoped parameter), not one
  for all 20 models: a cold run builds and loads each model there, minutes on one worker otherwise.
- The files in `PER_TEST` share nothing between their tests (no module-scoped fixture); each of their
  tests starts its own `mltag` and runners, so each is a unit.
- Units are handed out longest first, as far as the node ids tell: those named in `LONG_FIRST` (the ones
  that run for minutes on a cold clone), then files that start runners (tests/adapters, tests/integration)
  by their number of tests, then the rest (unit and docs tests, seconds each) to fill the workers' ends.
"""

from __future__ import annotations

from typing import Any

from xdist.scheduler import LoadFileScheduling

CONTRACT = "tests/adapters/test_contract.py::"
PER_TEST = ("tests/integration/test_cli.py::", "tests/integration/test_envs_side_by_side.py::")
LONG_FIRST = (
    "tests/integration/test_cli.py::test_analyze_every_captioner_and_the_judge",
    "tests/adapters/test_contract.py[clip-interrogator]",
    "tests/adapters/test_contract.py[ram-plus]",
    "tests/integration/test_envs_side_by_side.py::test_one_analyze_over_every_env",
)
RUNNER_TESTS = ("tests/adapters/", "tests/integration/")


def unit_of(nodeid: str) -> str:
    """The unit of work (xdist's "scope") a test belongs to."""
    if nodeid.startswith(CONTRACT) and nodeid.endswith("]"):
        return CONTRACT.removesuffix("::") + "[" + nodeid.rsplit("[", 1)[1]
    if nodeid.startswith(PER_TEST):
        return nodeid.split("[", 1)[0]
    return nodeid.split("::", 1)[0]


def order(units: dict[str, dict[str, bool]]) -> list[str]:
    """The units, longest expected first (see the module's docstring)."""

    def rank(unit: str) -> tuple[int, int]:
        if unit in LONG_FIRST:
            return (0, LONG_FIRST.index(unit))
        if unit.startswith(RUNNER_TESTS):
            return (1, -len(units[unit]))
        return (2, -len(units[unit]))

    return sorted(units, key=rank)


class Scheduling(LoadFileScheduling):
    """LoadFileScheduling with `unit_of` for its scopes and `order` for its queue."""

    ordered = False

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)

    def _assign_work_unit(self, node: Any) -> None:
        if not self.ordered:  # the queue is complete before the first unit is handed out
            for unit in order(self.workqueue):
                self.workqueue.move_to_end(unit)
            self.ordered = True
        super()._assign_work_unit(node)
