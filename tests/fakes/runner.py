"""A fake runner for the supervisor's fault paths: stdlib + schemas only, no model.

    python -m tests.fakes.runner <behaviour>

behaviour is a comma-separated list of:
    ok                  answer everything (tags from the image bytes' length)
    crash_at_start      exit 1 before reading anything
    hang_load           never answer load
    slow_load:S         sleep S seconds in load
    hang_on:N           hang forever on the N-th infer request (1-based)
    crash_on:N          SIGKILL itself on the N-th infer request of THIS process
    crash_on_name:X     exit 3 whenever an image named *X is in the request (a poison image)
    garbage             write non-protocol bytes on stdout before the first reply
    huge_frame          announce a reply bigger than the frame limit
    fork_child          start a grandchild that sleeps (must be killed with the group)
    error_on:N          answer the N-th infer with an error reply
    weights_missing     load fails with WeightsMissing
    load_error_long     load fails with a library's 2,000-character, many-line message (transformers'
                        "Unrecognized model ... one of the following strings: albert, align, ...")
    slow_exit:S         sleep S seconds after answering shutdown, then exit (a big model being freed)
    crash_decoding_ahead  exit 3 in load when asked to decode the photos sent meanwhile (as if one
                        of them killed the decoder); every load logs its decode_ahead
It writes its pid to $FAKE_PID_DIR/<pid> when that variable is set (for orphan checks).
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time

from schemas.framing import MAGIC, FrameEOF, encode_frame, read_frame
from schemas.protocol import PROTOCOL_VERSION, error_reply, ok_reply


def main() -> int:
    opts: dict[str, str] = {}
    for part in (sys.argv[1] if len(sys.argv) > 1 else "ok").split(","):
        key, _, value = part.partition(":")
        opts[key] = value
    if os.environ.get("FAKE_PID_DIR"):
        open(os.path.join(os.environ["FAKE_PID_DIR"], str(os.getpid())), "w").close()
    if "crash_at_start" in opts:
        print("fake runner: crashing at start as asked", file=sys.stderr)
        return 1
    if "fork_child" in opts:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        if os.environ.get("FAKE_PID_DIR"):
            open(os.path.join(os.environ["FAKE_PID_DIR"], str(child.pid)), "w").close()
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer

    def read_exact(n: int) -> bytes:
        return stdin.read(n)

    def write(obj: object) -> None:
        stdout.write(encode_frame(obj))
        stdout.flush()

    if "garbage" in opts:
        stdout.write(b"Loading checkpoint shards: 100%\n")
        stdout.flush()
    infer_count = 0
    while True:
        try:
            req = read_frame(read_exact)
        except FrameEOF:
            return 0
        op, rid = req["op"], req["id"]
        if op == "hello":
            write(
                ok_reply(
                    rid,
                    {
                        "protocol": PROTOCOL_VERSION,
                        "python": sys.version.split()[0],
                        "packages": {},
                        "devices": ["cpu"],
                        "pid": os.getpid(),
                    },
                )
            )
        elif op == "load":
            print(f"fake runner: load decode_ahead={bool(req.get('decode_ahead'))}", file=sys.stderr, flush=True)
            if "crash_decoding_ahead" in opts and req.get("decode_ahead"):
                os._exit(3)
            if "hang_load" in opts:
                time.sleep(3600)
            if "slow_load" in opts:
                time.sleep(float(opts["slow_load"]))
            if "load_error_long" in opts:
                kinds = ", ".join(f"type{i}" for i in range(300))
                write(
                    error_reply(
                        rid,
                        {
                            "type": "ValueError",
                            "message": "Unrecognized model in /w. Should have a "
                            f"`model_type` key in its config.json, or contain one of: {kinds}\n"
                            "second line",
                            "traceback": "Traceback (most recent call last): ...",
                        },
                    )
                )
                continue
            if "weights_missing" in opts:
                write(
                    error_reply(
                        rid,
                        {"type": "WeightsMissing", "message": "fake/model@abc is not in the cache", "traceback": ""},
                    )
                )
                continue
            write(
                ok_reply(
                    rid,
                    {
                        "load_s": 0.01,
                        "warmup_s": None,
                        "device": "cpu",
                        "dtype": "float32",
                        "model_version": "fake",
                        "notes": ["fake runner"],
                        "memory_mb": 1.0,
                    },
                )
            )
        elif op == "infer":
            infer_count += 1
            names = [img["name"] for img in req["images"]]
            print(f"fake runner: infer #{infer_count} {names}", file=sys.stderr, flush=True)
            if opts.get("hang_on") == str(infer_count):
                time.sleep(3600)
            if opts.get("crash_on") == str(infer_count):
                os.kill(os.getpid(), signal.SIGKILL)
            if "crash_on_name" in opts and any(n.endswith(opts["crash_on_name"]) for n in names):
                print("fake runner: poison image, exiting 3", file=sys.stderr, flush=True)
                os._exit(3)
            if opts.get("error_on") == str(infer_count):
                write(error_reply(rid, {"type": "ValueError", "message": "fake failure", "traceback": "tb"}))
                continue
            if "huge_frame" in opts:
                stdout.write(MAGIC + struct.pack(">I", 0xFFFFFFF0))
                stdout.flush()
                time.sleep(3600)
            results = [
                {
                    "id": img["id"],
                    "status": "ok",
                    "tags": [{"name": f"len{len(img['data'])}", "score": 0.9}],
                    "caption": None,
                    "raw": {"n": len(img["data"])},
                    "inference_s": 0.001,
                }
                for img in req["images"]
            ]
            write(ok_reply(rid, {"results": results, "batch_s": 0.001, "batch_size": len(results)}))
        elif op == "shutdown":
            write(ok_reply(rid, {}))
            if "slow_exit" in opts:
                time.sleep(float(opts["slow_exit"]))
            return 0


if __name__ == "__main__":
    sys.exit(main())
