"""Every error mltag reports, in one tree (the way httpx documents one exception hierarchy).

`MltagError` is the root: a one-line `message` saying what went wrong, an optional `fix` (the command
or change that solves it), and the exit code the CLI ends with: 2 for what the user asked (a flag, a
path, a file they gave), 1 for what failed while working (a runner, the disk, the store mid-run). The
CLI has one handler for the whole tree (orchestrator/cli/__init__.py); any other exception is a bug
and keeps its traceback.

    MltagError
    ├── UsageError              a flag or argument that cannot be used
    ├── RegistryError           envs/<model>/model.toml
    │   └── UnknownModel
    ├── EnvBuildError           building or locking a model's venv
    ├── ImageDiscoveryError     the paths to analyse
    │   └── ContainerError      an archive or dataset that cannot be listed or read (also an OSError)
    ├── SynonymError            --synonyms FILE (also a ValueError)
    ├── LabelsError             eval --labels FILE (also a ValueError)
    ├── StoreError              the results store (sqlite3 errors are translated at its edge)
    │   └── StoreWriteError     the store stopped taking cells mid-run
    ├── OutputError             --out FILE could not be written
    ├── ExportError             `mltag export`: one photo's XMP could not be read or merged
    ├── ClusterError            --cluster: Ray missing, no cluster at the address
    └── RunnerError             talking to a runner (turned into cells by the supervisor)
        ├── RunnerTimeout
        ├── RunnerCrashed
        │   └── ProtocolViolation
        └── RemoteError         the runner answered with an error (`type` from schemas/protocol.py)
"""

from __future__ import annotations


class MltagError(Exception):
    """The root: what went wrong (`message`), what to do (`fix`), and the CLI's exit code."""

    exit_code = 2

    def __init__(self, message: str, fix: str | None = None, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(MltagError):
    """A flag, argument or combination of them that cannot be used."""


class RegistryError(MltagError):
    """A model.toml that cannot be read, or a selection naming no model."""


class UnknownModel(RegistryError):
    pass


class EnvBuildError(MltagError):
    """A model's venv could not be built or locked."""

    exit_code = 1


class ImageDiscoveryError(MltagError):
    """A path to analyse that does not exist or holds no image."""


class ContainerError(ImageDiscoveryError, OSError):
    """An archive or dataset that cannot be listed or read (orchestrator/archives.py); an OSError too, as
    every other unreadable photo: one member or one container becomes a bad_image cell."""

    exit_code = 1


class SynonymError(MltagError, ValueError):
    """A synonym file that cannot be read: the message names the file, the line and the fix."""


class LabelsError(MltagError, ValueError):
    """A labels file that cannot be used: the message names the file, the row and the fix."""


class StoreError(MltagError):
    """A results store that cannot be used; the message says what to do."""


class StoreWriteError(StoreError):
    """The store stopped taking cells during a run (disk full, locked): every cell before it is kept."""

    exit_code = 1


class OutputError(MltagError):
    """The output could not be written; the message says what to do."""

    exit_code = 1


class ExportError(MltagError):
    """One photo's XMP (its sidecar, or the photo for --embed) could not be read or merged: `mltag export`
    names the photo, leaves it as it was and goes on with the others."""

    exit_code = 1


class ClusterError(MltagError):
    """The cluster cannot be used (Ray missing, no cluster at the address); `fix` says what to do."""


class RunnerError(MltagError):
    """Base of everything that can go wrong talking to a runner."""

    exit_code = 1


class RunnerTimeout(RunnerError):
    pass


class RunnerCrashed(RunnerError):
    """The runner died, or its stream broke. `exit_info` says how; `stderr_tail` says why."""

    def __init__(self, message: str, exit_info: str = "", stderr_tail: str = "") -> None:
        super().__init__(message)
        self.exit_info = exit_info
        self.stderr_tail = stderr_tail


class ProtocolViolation(RunnerCrashed):
    """The runner wrote something that is not a valid frame (the runner is killed)."""


class RemoteError(RunnerError):
    """The runner is alive and answered with an error reply (`type`: the runner-side exception's name,
    compared with the constants of schemas/protocol.py, e.g. ERROR_WEIGHTS_MISSING)."""

    def __init__(self, type_: str, message: str, traceback: str) -> None:
        super().__init__(f"{type_}: {message}")
        self.type = type_
        self.message = message  # the runner's own message, without the type
        self.traceback = traceback
