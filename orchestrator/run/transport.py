"""One runner subprocess and the frames to and from it, with a deadline on every reply.

Spawn rules (jupyter_client, pre-commit): the venv's absolute python, never a bare `python`;
its own process group (start_new_session) so a kill reaches grandchildren; an environment built
on purpose (no PYTHONPATH/PYTHONHOME leaking in, HF offline when asked, thread limits,
bytecode writing on so the second start is fast); stderr to a log FILE (a pipe nobody drains
freezes the child), whose tail explains a crash.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
import time
from collections import deque
from pathlib import Path
from typing import Any, NoReturn, Protocol

import psutil

from orchestrator.errors import ProtocolViolation, RemoteError, RunnerCrashed, RunnerError, RunnerTimeout
from schemas.framing import HEADER_SIZE, MAX_FRAME, FrameError, decode_body, encode_frame, parse_header

F_SETPIPE_SZ = 1031  # Linux: 1 MiB pipes move a 5 MiB photo ~2x faster than the 64 KiB default
KILL_GRACE_S = 3.0


KEEP_ENV = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR", "TERM", "HF_HOME", "HF_TOKEN",
            "HF_HUB_CACHE", "HF_ENDPOINT", "HF_HUB_OFFLINE", "CUDA_VISIBLE_DEVICES", "SSL_CERT_FILE",
            "REQUESTS_CA_BUNDLE", "XDG_CACHE_HOME", "HF_MODULES_CACHE", "OLLAMA_HOST")


def runner_env(python: Path, offline: bool, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in KEEP_ENV if k in os.environ}
    venv = python.parent.parent
    env.update(
        VIRTUAL_ENV=str(venv),
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
        PYTHONNOUSERSITE="1",
        PYTHONUNBUFFERED="1",
        MLTAG_PARENT_PID=str(os.getpid()),
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        TRANSFORMERS_NO_ADVISORY_WARNINGS="1",
        # Apple silicon: an operator MPS lacks runs on the CPU instead of failing the model (read by
        # torch at import; no effect elsewhere). The user's own setting wins.
        PYTORCH_ENABLE_MPS_FALLBACK=os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK", "1"),
    )
    if offline:
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.update(extra or {})
    return env  # PYTHONDONTWRITEBYTECODE deliberately absent: cached bytecode halves the start


def describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (killed: out of memory? see `dmesg`)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exited with code {code}"


def tail(path: Path, lines: int = 20) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(deque(f, maxlen=lines)).rstrip()
    except OSError:
        return ""


class Runner(Protocol):
    """What the supervisor needs of a runner: a RunnerProcess here, or a runner a cluster node hosts
    (orchestrator/cluster/transport.py HostedRunner)."""

    log_path: Path

    @property
    def pid(self) -> int: ...

    def alive(self) -> bool: ...

    def call(self, op: str, timeout: float, **fields: Any) -> dict[str, Any]: ...

    def kill(self, grace: float = KILL_GRACE_S) -> str: ...

    def stop(self, timeout: float = 10.0) -> None: ...


class RunnerProcess:
    """Start with `RunnerProcess.start(...)`, talk with `call(op, timeout, **fields)`."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, max_frame: int) -> None:
        self.proc = proc
        self.log_path = log_path
        self.max_frame = max_frame
        self._next_id = 0
        self._buf = bytearray()

    @classmethod
    def start(cls, python: Path, adapter: str, log_path: Path, *, offline: bool = False,
              extra_env: dict[str, str] | None = None,
              max_frame: int = MAX_FRAME, module: str = "runners.host") -> RunnerProcess:
        python = Path(python)
        if not python.is_absolute():
            raise ValueError(f"runner python must be an absolute path, got {python}")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
        log.write(f"\n=== {time.strftime('%H:%M:%S')} start {python} -m {module} {adapter}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                [str(python), "-m", module, adapter], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, env=runner_env(python, offline, extra_env), cwd=str(log_path.parent),
                start_new_session=True, bufsize=0, close_fds=True)
        finally:
            log.close()
        for stream in (proc.stdin, proc.stdout):
            try:
                fcntl.fcntl(stream.fileno(), F_SETPIPE_SZ, 1 << 20)  # type: ignore[union-attr]  # PIPE: never None
            except OSError:
                pass
        return cls(proc, log_path, max_frame)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, op: str, timeout: float, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its reply; raises RunnerTimeout/RunnerCrashed/RemoteError."""
        self._next_id += 1
        req_id = self._next_id
        deadline = time.monotonic() + timeout
        self._send({"id": req_id, "op": op, **fields}, deadline)
        reply = self._receive(deadline, op, timeout)
        if not isinstance(reply, dict) or reply.get("id") != req_id:
            self._crash_violation(f"reply does not match request {req_id}: {str(reply)[:200]}")
        if not reply.get("ok"):
            err = reply.get("error") or {}
            raise RemoteError(err.get("type", "Error"), err.get("message", ""), err.get("traceback", ""))
        return reply.get("result") or {}

    def _crashed(self, what: str) -> RunnerCrashed:
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.kill()
        info = describe_exit(self.proc.returncode)
        return RunnerCrashed(f"runner {what}: {info}", info, tail(self.log_path))

    def _crash_violation(self, message: str) -> NoReturn:
        info = self.kill()
        raise ProtocolViolation(f"protocol violation: {message}; runner {info}", info, tail(self.log_path))

    def _send(self, obj: dict[str, Any], deadline: float) -> None:
        data = memoryview(encode_frame(obj, self.max_frame))
        fd = self.proc.stdin.fileno()  # type: ignore[union-attr]  # started with stdin=PIPE: never None
        while data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RunnerTimeout("runner stopped reading its input")
            _, writable, _ = select.select([], [fd], [], remaining)
            if not writable:
                continue
            try:
                written = os.write(fd, data[: 1 << 20])
            except (BrokenPipeError, ConnectionResetError):
                raise self._crashed("closed its input") from None
            data = data[written:]

    def _read_into_buffer(self, n: int, deadline: float, op: str, timeout: float) -> None:
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]  # started with stdout=PIPE: never None
        while len(self._buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RunnerTimeout(f"no reply to '{op}' within {timeout:g} s")
            readable, _, _ = select.select([fd], [], [], min(remaining, 1.0))
            if not readable:
                continue
            chunk = os.read(fd, max(n - len(self._buf), 1 << 16))
            if not chunk:
                partial = " in the middle of a reply" if self._buf else ""
                raise self._crashed(f"died{partial} while handling '{op}'")
            self._buf += chunk

    def _receive(self, deadline: float, op: str, timeout: float) -> Any:
        self._read_into_buffer(HEADER_SIZE, deadline, op, timeout)
        try:
            length = parse_header(bytes(self._buf[:HEADER_SIZE]), self.max_frame)
        except FrameError as exc:
            self._crash_violation(str(exc))
        self._read_into_buffer(HEADER_SIZE + length, deadline, op, timeout)
        body = bytes(self._buf[HEADER_SIZE:HEADER_SIZE + length])
        del self._buf[:HEADER_SIZE + length]
        try:
            return decode_body(body)
        except FrameError as exc:
            self._crash_violation(str(exc))

    def kill(self, grace: float = KILL_GRACE_S) -> str:
        """SIGTERM the process group, SIGKILL after `grace`, then sweep any survivor. Returns exit info."""
        if self.proc.poll() is None or _group_alive(self.proc.pid):
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(self.proc.pid, signal.SIGKILL)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self._close_pipes()
        return describe_exit(self.proc.returncode)

    def stop(self, timeout: float = 10.0) -> None:
        """Polite shutdown (the one polite step), then the kill ladder for anything left."""
        if self.proc.poll() is None:
            try:
                self.call("shutdown", timeout=timeout)
                self.proc.wait(timeout=timeout)
            except (RunnerError, subprocess.TimeoutExpired, OSError):
                pass
        self.kill()

    def _close_pipes(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    if sig == signal.SIGKILL:  # backup sweep: anything of the group that escaped killpg
        for p in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(p.pid) == pgid:
                    p.kill()
            except (ProcessLookupError, psutil.Error, OSError):
                continue


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False
