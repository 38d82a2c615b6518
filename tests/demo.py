"""`make demo`: the main job on the sample photos.

With the Hugging Face Hub reachable it runs the real models (downloading their pinned
weights once). Without it, it builds tiny RANDOM models of the same architectures and says so
loudly: the plumbing is real, the tags are noise. Runs in the orchestrator's venv.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request

from orchestrator.models.registry import load_registry, select
from orchestrator.paths import cache_root
from tests.tiny_models import tiny_weights

DEMO_DIR = cache_root() / "demo"
BANNER = """
##########################################################################################
#  DEMO WITH TINY RANDOM MODELS: the Hugging Face Hub is not reachable from here, so the  #
#  real weights cannot be downloaded. Every model below is a randomly initialised model   #
#  of the real architecture, built locally: the pipeline is real, the tags are NOISE.     #
#  On a machine with network access, `make demo` runs the real models.                    #
##########################################################################################
"""


def hub_reachable(timeout: float = 5.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        urllib.request.urlopen("https://huggingface.co/api/models/openai/clip-vit-base-patch32", timeout=timeout)
        return True
    except Exception:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="clip,wd14,florence2")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    # A fresh run each time (--force), stored under .cache/demo (never in the checkout's samples/),
    # then rendered as the self-contained HTML report from the store.
    store, html = DEMO_DIR / "results.sqlite", DEMO_DIR / "report.html"
    cmd = [
        sys.executable,
        "-m",
        "orchestrator",
        "analyze",
        *args.paths,
        "--models",
        args.models,
        "--warmup",
        "--show-timing",
        "--store",
        str(store),
        "--force",
    ]
    tiny = not hub_reachable()
    if tiny:
        print(BANNER, file=sys.stderr)
        for spec in select(load_registry(), args.models):
            print(f"building tiny random {spec.name} ...", file=sys.stderr, flush=True)
            cmd += [f"--weights={name}={path}" for name, path in tiny_weights([spec.name]).items()]
        cmd += ["--offline", "--device", "cpu"]
    print("$ mltag " + " ".join(cmd[3:]), file=sys.stderr, flush=True)
    code = os.spawnv(os.P_WAIT, sys.executable, cmd)
    report = [sys.executable, "-m", "orchestrator", "report", *args.paths, "--store", str(store), "--html", str(html)]
    print("$ mltag " + " ".join(report[3:]), file=sys.stderr, flush=True)
    report_code = os.spawnv(os.P_WAIT, sys.executable, report)
    if tiny:
        print(BANNER, file=sys.stderr)
    # Last: the app over these results (browse, label by keyboard, rank the models on your labels).
    where = os.path.relpath(store) if not os.path.relpath(store).startswith("..") else str(store)
    print(
        f"\nbrowse and label these results:\n  .venv/bin/mltag serve {' '.join(args.paths)} --store {where} --open",
        file=sys.stderr,
        flush=True,
    )
    return code or report_code


if __name__ == "__main__":
    sys.exit(main())
