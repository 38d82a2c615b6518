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
from typing import Any, NoReturn

import psutil

from orchestrator.errors import ProtocolViolation, RemoteError, RunnerCrashed, RunnerError, RunnerTimeout
from orchestrator.run.runner import KILL_GRACE_S
from schemas.framing import HEADER_SIZE, MAX_FRAME, FrameError, decode_body, encode_frame, parse_header

F_SETPIPE_SZ = 1031  # Linux: 1 MiB pipes move a 5 MiB photo ~2x faster than the 64 KiB default


KEEP_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "TERM",
    "HF_HOME",
    "HF_TOKEN",
    "HF_HUB_CACHE",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "CUDA_VISIBLE_DEVICES",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "XDG_CACHE_HOME",
    "HF_MODULES_CACHE",
    "OLLAMA_HOST",
    # a user's thread budget for torch / onnxruntime (wd14's session reads it; a shared box sets it)
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)


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


class RunnerProcess:
    """Start with `RunnerProcess.start(...)`, talk with `call(op, timeout, **fields)`, or queue
    requests with `request(...)` and collect their replies in order with `reply(...)`: the runner
    reads requests while it works (runners/host.py), so the next image can wait there."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path, max_frame: int) -> None:
        self.proc = proc
        self.log_path = log_path
        self.max_frame = max_frame
        self._next_id = 0
        self._buf = bytearray()
        self._out = bytearray()  # request bytes not yet written to the runner
        self._awaiting: deque[tuple[int, str]] = deque()  # (id, op) of requests not yet answered
        self._input_closed = False  # the runner closed its input: nothing more is written
        if proc.stdin is not None:
            # Writes never block: a request waits in _out while the runner is busy, and replies
            # are read meanwhile, so neither side can wait on the other forever.
            os.set_blocking(proc.stdin.fileno(), False)

    @classmethod
    def start(
        cls,
        python: Path,
        adapter: str,
        log_path: Path,
        *,
        offline: bool = False,
        extra_env: dict[str, str] | None = None,
        max_frame: int = MAX_FRAME,
        module: str = "runners.host",
    ) -> RunnerProcess:
        python = Path(python)
        if not python.is_absolute():
            raise ValueError(f"runner python must be an absolute path, got {python}")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
        log.write(f"\n=== {time.strftime('%H:%M:%S')} start {python} -m {module} {adapter}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                [str(python), "-m", module, adapter],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                env=runner_env(python, offline, extra_env),
                cwd=str(log_path.parent),
                start_new_session=True,
                bufsize=0,
                close_fds=True,
            )
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

    @property
    def unsent_bytes(self) -> int:
        """Request bytes queued for the runner that its input pipe has not taken yet."""
        return len(self._out)

    @property
    def unanswered(self) -> int:
        """Requests sent (or queued to be written) whose replies have not been read."""
        return len(self._awaiting)

    @property
    def oldest_id(self) -> int:
        """The id of the oldest request not yet answered (its reply is the next to read)."""
        return self._awaiting[0][0]

    @property
    def oldest_op(self) -> str:
        return self._awaiting[0][1]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, op: str, timeout: float, **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its reply; raises RunnerTimeout/RunnerCrashed/RemoteError."""
        deadline = time.monotonic() + timeout
        req_id = self.request(op, **fields)
        self._flush(deadline)
        return self._reply(req_id, deadline, timeout)

    def request(self, op: str, **fields: Any) -> int:
        """Queue one request without waiting (what the pipe cannot take yet is written while a reply
        is awaited); returns its id for `reply`. The runner answers requests in order."""
        self._next_id += 1
        self._out += encode_frame({"id": self._next_id, "op": op, **fields}, self.max_frame)
        self._awaiting.append((self._next_id, op))
        self._write_some()
        return self._next_id

    def reply(self, req_id: int, timeout: float) -> dict[str, Any]:
        """Wait up to `timeout` s for the reply to `req_id`, the oldest request not yet answered;
        raises RunnerTimeout/RunnerCrashed/RemoteError."""
        return self._reply(req_id, time.monotonic() + timeout, timeout)

    def _reply(self, req_id: int, deadline: float, timeout: float) -> dict[str, Any]:
        if not self._awaiting or self._awaiting[0][0] != req_id:
            raise ValueError(f"request {req_id} is not the oldest unanswered one")
        op = self._awaiting.popleft()[1]
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

    def _write_some(self) -> None:
        """Write what the pipe takes now of the queued request bytes, without blocking."""
        if not self._out or self._input_closed:
            return
        try:
            with memoryview(self._out) as view:  # no copy of the chunk (a camera photo is megabytes)
                written = os.write(self.proc.stdin.fileno(), view[: 1 << 20])  # type: ignore[union-attr]
        except BlockingIOError:
            return
        except (BrokenPipeError, ConnectionResetError):
            # The runner is gone (or closed its input): its reply never comes, which the read
            # of that reply reports with the exit status and the log's tail.
            self._input_closed = True
            self._out.clear()
            return
        del self._out[:written]

    def _flush(self, deadline: float) -> None:
        """Write every queued request byte (reading replies meanwhile, so a runner blocked on
        writing one never stalls us)."""
        while self._out and not self._input_closed:
            if not self._pump(deadline, "runner stopped reading its input"):
                break  # its output ended: it is exiting
        if self._out or self._input_closed:
            raise self._crashed("closed its input")

    def _pump(self, deadline: float, late: str) -> bool:
        """Wait (until `deadline`) for the runner's output or room in its input; write and read what
        can be. Returns False at the end of the runner's output."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RunnerTimeout(late)
        out_fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        writing = [self.proc.stdin.fileno()] if self._out and not self._input_closed else []  # type: ignore[union-attr]
        readable, writable, _ = select.select([out_fd], writing, [], min(remaining, 1.0))
        if writable:
            self._write_some()
        if readable:
            chunk = os.read(out_fd, 1 << 20)
            if not chunk:
                return False
            self._buf += chunk
        return True

    def _read_into_buffer(self, n: int, deadline: float, op: str, timeout: float) -> None:
        while len(self._buf) < n:
            if not self._pump(deadline, f"no reply to '{op}' within {timeout:g} s"):
                partial = " in the middle of a reply" if self._buf else ""
                raise self._crashed(f"died{partial} while handling '{op}'")

    def _receive(self, deadline: float, op: str, timeout: float) -> Any:
        self._read_into_buffer(HEADER_SIZE, deadline, op, timeout)
        try:
            length = parse_header(bytes(self._buf[:HEADER_SIZE]), self.max_frame)
        except FrameError as exc:
            self._crash_violation(str(exc))
        self._read_into_buffer(HEADER_SIZE + length, deadline, op, timeout)
        body = bytes(self._buf[HEADER_SIZE : HEADER_SIZE + length])
        del self._buf[: HEADER_SIZE + length]
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

    def shutdown(self, timeout: float = 10.0) -> bool:
        """Ask the runner to exit (the one polite step); True when it agreed. It then exits on its
        own, which can take a while (a model's memory is freed): `finish` waits for that."""
        if self.proc.poll() is not None or self._awaiting:  # requests unanswered: no polite way out
            return False
        try:
            self.call("shutdown", timeout=timeout)
        except (RunnerError, OSError):
            return False
        return True

    def finish(self, timeout: float = 10.0) -> None:
        """Wait up to `timeout` s for the runner to exit, then the kill ladder for anything left."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def stop(self, timeout: float = 10.0) -> None:
        """Polite shutdown, wait for the exit, then the kill ladder for anything left."""
        if self.shutdown(timeout):
            self.finish(timeout)
        else:
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
