"""The runner process: `python -m runners.host <adapter module>`.

One loop for every model. The first statements hide the protocol stream from everything else
(execnet's trick): fd 0 and fd 1 are duplicated for the frames, then fd 0 points at /dev/null
and fd 1 at stderr, so a stray print() or input() in a library cannot corrupt the wire. Then
the runner arranges to die with its parent, imports the adapter named on its command line,
and answers hello / load / infer / shutdown until EOF. Every exception becomes an error reply.
Requests are read on a thread as they come, so the orchestrator can send the next image while
this one computes (it waits here, read, instead of in the pipe); the photos that come while the
model loads are decoded meanwhile, when the orchestrator asks for it (runners/_decode_ahead.py).
"""

from __future__ import annotations

import os
import sys

# --- protect the protocol fds before ANY other import can print -------------------------------
_PROTO_IN = os.dup(0)
_PROTO_OUT = os.dup(1)
_devnull = os.open(os.devnull, os.O_RDONLY)
os.dup2(_devnull, 0)
os.close(_devnull)
os.dup2(2, 1)
sys.stdin = open(0, closefd=False)  # noqa: SIM115 - wrappers over the now harmless fds
sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115

import importlib  # noqa: E402
import importlib.metadata  # noqa: E402
import platform  # noqa: E402
import queue  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from typing import Any  # noqa: E402

from runners._decode_ahead import DecodeAhead  # noqa: E402
from schemas.framing import FrameEOF, FrameError, encode_frame, read_frame  # noqa: E402
from schemas.protocol import PROTOCOL_VERSION, ErrorInfo, error_reply, ok_reply  # noqa: E402
from schemas.status import CellStatus  # noqa: E402

PACKAGES = (
    "torch",
    "transformers",
    "tokenizers",
    "onnxruntime",
    "open_clip_torch",
    "timm",
    "torchvision",
    "pillow",
    "numpy",
    "huggingface-hub",
    "msgpack",
    "accelerate",
    "ram",
    "fairscale",
    "clip-interrogator",
    "ollama",
    "httpx",
)


def _read_exact(n: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = os.read(_PROTO_IN, min(n, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _write(obj: Any) -> None:
    data = memoryview(encode_frame(obj))
    while data:
        written = os.write(_PROTO_OUT, data)
        data = data[written:]


def _error(exc: BaseException) -> ErrorInfo:
    # error_type: a protocol constant an exception may carry (schemas/protocol.py), else its class name
    text = "".join(traceback.format_exception(exc))
    # The whole text goes to the runner log (stderr): the orchestrator shows one bounded line of it
    # (a library's message can be hundreds of lines) and names the log.
    print(text, file=sys.stderr, flush=True)
    return {
        "type": getattr(exc, "error_type", type(exc).__name__),
        "message": str(exc) or type(exc).__name__,
        "traceback": text,
    }


def _die_with_parent() -> None:
    """Exit when the orchestrator dies, even if it is SIGKILLed and cannot clean up."""
    parent = int(os.environ.get("MLTAG_PARENT_PID", "0") or os.getppid())
    try:  # Linux: the kernel delivers SIGKILL when the parent thread exits
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(0.5)

    if os.getppid() != parent:
        os._exit(3)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


class Host:
    def __init__(self, adapter_module: str) -> None:
        self.adapter_module = adapter_module
        self.adapter: Any = None
        self.loaded = False
        self.exact_decode = False  # load option exact_decode: every image decoded at full size
        self.ahead = DecodeAhead()  # the reader offers it the photos that come during the load

    def _adapter(self) -> Any:
        if self.adapter is None:
            module = importlib.import_module(self.adapter_module)
            self.adapter = module.Adapter()
        return self.adapter

    def hello(self, req: dict[str, Any]) -> dict[str, Any]:
        self._adapter()  # import errors surface here, with the env's own traceback
        from runners.base import available_devices

        return {
            "protocol": PROTOCOL_VERSION,
            "python": platform.python_version(),
            "executable": sys.executable,
            "packages": _versions(),
            "devices": available_devices(),
            "adapter": self.adapter_module,
            "pid": os.getpid(),
        }

    def load(self, req: dict[str, Any]) -> dict[str, Any]:
        from runners.base import gpu_memory_mb, rss_mb

        spec = req["spec"]
        self.exact_decode = bool(spec.get("options", {}).get("exact_decode"))
        adapter = self._adapter()
        expected = getattr(adapter, "expected_decode_need", None)
        # decode_ahead: the orchestrator asks for it unless a runner of this model has failed
        # (a photo that crashes its decoder must crash an infer, where it is found, not the load).
        if req.get("decode_ahead") and expected is not None and not self.exact_decode:
            self.ahead.begin(expected)
        t0 = time.perf_counter()
        try:
            info = dict(adapter.load(spec))
        finally:
            self.ahead.end()
        load_s = time.perf_counter() - t0
        self.loaded = True
        warmup_s = None
        if spec.get("warmup"):  # with the options real images will get
            warmup_s = self._warmup(req.get("infer_options", {}))
        gpu = gpu_memory_mb()
        return {
            "load_s": load_s,
            "warmup_s": warmup_s,
            "device": info["device"],
            "dtype": info["dtype"],
            "model_version": info["model_version"],
            "notes": list(info.get("notes", [])),
            "memory_mb": gpu if gpu is not None else rss_mb(),
            "memory_kind": "vram" if gpu is not None else "rss",
        }

    def _warmup(self, options: dict[str, Any]) -> float:
        from PIL import Image

        from runners._images import DecodedImage

        img = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
        # A text-only adapter (the judge) says what a representative input is.
        make = getattr(self.adapter, "warmup_inputs", None)
        inputs = make() if make else [DecodedImage("warmup", "warmup", img, {})]
        t0 = time.perf_counter()
        self.adapter.infer(inputs, options)
        return time.perf_counter() - t0

    def infer(self, req: dict[str, Any]) -> dict[str, Any]:
        from runners._decode_ahead import take
        from runners._images import BadImage, DecodedImage, decode, decode_options

        if not self.loaded:
            raise RuntimeError("infer before load")
        options = req.get("options", {})
        results: dict[str, dict[str, Any]] = {}
        decoded = []
        need = self._decode_need(options)
        for item in req["images"]:
            if "data" not in item:  # text-only (the judge): the context is the input
                decoded.append(DecodedImage(item["id"], item["name"], None, {}, item.get("context") or {}))
                continue
            try:
                img = take(item, need) or decode(
                    item["id"], item["name"], item["data"], need=need, **decode_options(options)
                )
            except BadImage as exc:
                results[item["id"]] = {"id": item["id"], "status": CellStatus.BAD_IMAGE.value, "message": str(exc)}
                continue
            img.context = item.get("context") or {}  # a judge that sees the photo gets both
            decoded.append(img)
        t0 = time.perf_counter()
        if decoded:
            self._run_batch(decoded, options, results)
        batch_s = time.perf_counter() - t0
        return {
            "results": [results[item["id"]] for item in req["images"]],
            "batch_s": batch_s,
            "batch_size": len(decoded),
        }

    def _decode_need(self, options: dict[str, Any]) -> Any:
        """The adapter's decode_need bound to these options (runners/base.py), or None: full size."""
        method = getattr(self.adapter, "decode_need", None)
        if method is None or self.exact_decode or options.get("exact_decode"):
            return None
        return lambda width, height: method(width, height, options)

    def _run_batch(self, images: list[Any], options: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
        t0 = time.perf_counter()
        try:
            outs = self.adapter.infer(images, options)
            if len(outs) != len(images):
                raise RuntimeError(f"adapter returned {len(outs)} results for {len(images)} images")
        except Exception as exc:
            if len(images) > 1:  # one image may be at fault: isolate it
                for img in images:
                    self._run_batch([img], options, results)
                return
            results[images[0].id] = {
                "id": images[0].id,
                "status": CellStatus.ERROR.value,
                "message": f"{type(exc).__name__}: {exc}",
                "error": _error(exc),
                "inference_s": time.perf_counter() - t0,
            }
            return
        per_image = (time.perf_counter() - t0) / len(images)
        for img, out in zip(images, outs, strict=True):
            results[img.id] = {
                "status": CellStatus.OK.value,
                **out,
                "id": img.id,
                "image": img.info,
                "inference_s": per_image,
            }

    def dispatch(self, req: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        op = req.get("op")
        if op == "shutdown":
            return ok_reply(req["id"], {}), True
        handler = {"hello": self.hello, "load": self.load, "infer": self.infer}.get(op or "")
        if handler is None:
            raise ValueError(f"unknown op {op!r}")
        return ok_reply(req["id"], handler(req)), False


def _read_requests(requests: queue.SimpleQueue[Any], ahead: DecodeAhead) -> None:
    """Read requests as they come, while the main thread works: the orchestrator sends the next
    image during this one's inference, and it is here when this one is done (and decoded, if it
    came during the load). The stream's end or a bad frame is queued too, after every request
    before it."""
    while True:
        try:
            request = read_frame(_read_exact)
            ahead.offer(request)
            requests.put(request)
        except FrameError as exc:  # FrameEOF included
            requests.put(exc)
            return


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m runners.host <adapter module>", file=sys.stderr)
        return 2
    _die_with_parent()
    host = Host(argv[1])
    requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
    threading.Thread(target=_read_requests, args=(requests, host.ahead), name="requests", daemon=True).start()
    while True:
        req = requests.get()
        if isinstance(req, FrameEOF):
            return 0  # the orchestrator closed the pipe: nothing more to do
        if isinstance(req, FrameError):
            _write(error_reply(None, _error(req)))
            return 4  # the stream is desynchronised: there is no safe way on
        req_id = req.get("id") if isinstance(req, dict) else None
        try:
            reply, stop = host.dispatch(req)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a reply
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            reply, stop = error_reply(req_id, _error(exc)), False
        _write(reply)
        if stop:
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
