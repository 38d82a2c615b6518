"""The static HTML report at archive size: how long `mltag report --html` takes to write, how big the
file is, and how long headless Chromium takes to open it.

Writes a results store directly (no model runs) with N photos x 3 models as a run would store them:
wd14 with the real WD v3 tag count (10,861 raw scores per cell, ~25 tags above its threshold), clip
scoring a 300-term vocabulary and a captioner (a caption; its tags are extracted when read). The
photos are real JPEG files (640x427, made from samples/ with a different colour cast each), so every
thumbnail is really decoded. Photos and store are made once per N (cached under .cache/bench/).

    .venv/bin/python bench/report.py [--counts 2000,10000] [--no-browser]

Prints per N: write time (with an empty thumbnail cache, then again with the thumbnails cached), file
size, and in Chromium: the time to the load event (the page is usable: filters and the first screen
of photos drawn) and the JS heap after load.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from orchestrator.images import hash_file  # noqa: E402
from orchestrator.paths import PROJECT_ROOT, cache_root  # noqa: E402
from orchestrator.store import CellMeta, ResultStore  # noqa: E402

WD_TAGS = [f"wd_tag_{i:05d}" for i in range(10_861)]
CLIP_TERMS = [f"urbex term {i}" for i in range(300)]
CAPTION = "An abandoned factory hall with broken windows, rusted machines and graffiti on peeling walls."


def make_store(folder: Path, store: Path, n: int) -> None:
    folder.mkdir(parents=True)
    base = ImageOps.fit(Image.open(PROJECT_ROOT / "samples" / "rocket.jpg").convert("RGB"), (640, 427))
    refs = []
    for i in range(n):
        tint = Image.new("RGB", base.size, ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256))
        path = folder / f"{i // 500:03d}" / f"IMG_{i:05d}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.blend(base, tint, 0.35).save(path, "JPEG", quality=85)
        refs.append(hash_file(path))
    rng = random.Random(0)
    db = ResultStore(store)
    db.begin_run("bench", 0.0, {}, ["analyze"])
    db.record_images("bench", refs)
    metas = {
        m: CellMeta(options_key="k", kind=k, revision="r", device="cpu", load_s=1.0)
        for m, k in (("wd14", "tagger"), ("clip", "zero-shot"), ("florence2", "captioner"))
    }
    for ref in refs:
        scores = {t: rng.random() * 0.3 for t in WD_TAGS}
        for t in rng.sample(WD_TAGS, 25):  # 25 general tags above the 0.35 threshold
            scores[t] = 0.35 + 0.65 * rng.random()
        wd_tags = [{"name": "general", "score": 0.9, "category": "rating"}] + [
            {"name": t, "score": s, "category": "general"} for t, s in scores.items() if s >= 0.35
        ]
        cells: dict[str, dict[str, Any]] = {
            "wd14": {
                "status": "ok",
                "inference_s": 0.05,
                "tags": wd_tags,
                "raw": {"scores": scores, "thresholds": {"general": 0.35, "character": 0.85}},
            },
            "clip": {
                "status": "ok",
                "inference_s": 0.02,  # zero-shot: every term scored and listed
                "tags": sorted(
                    ({"name": t, "score": rng.random() ** 3} for t in CLIP_TERMS), key=lambda t: -t["score"]
                ),
            },
            "florence2": {"status": "ok", "inference_s": 1.5, "caption": CAPTION, "tags": []},
        }
        for model, cell in cells.items():
            db.put_cell("bench", ref.sha256, model, cell, metas[model])
    db.finish_run("bench", 1.0)
    db.close()


def open_in_chromium(report: Path) -> dict[str, float]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    with tempfile.TemporaryDirectory(prefix="mltag-bench-chromium-") as profile:
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1400,1000",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(flag)
        chrome = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"), options=options)
        chrome.set_page_load_timeout(600)
        try:
            chrome.get(report.as_uri())
            nav = chrome.execute_script(
                "var n = performance.getEntriesByType('navigation')[0];"
                "return [n.domContentLoadedEventEnd, n.loadEventEnd,"
                " performance.memory ? performance.memory.usedJSHeapSize : 0,"
                " document.querySelectorAll('article.image').length]"
            )
            return {"dom_s": nav[0] / 1000, "load_s": nav[1] / 1000, "heap_mb": nav[2] / 2**20, "drawn": nav[3]}
        finally:
            chrome.quit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--counts", default="2000", help="comma-separated photo counts")
    parser.add_argument("--no-browser", action="store_true", help="only write the report")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("models: wd14 (10,861 raw scores per cell), clip (300 terms), florence2 (a caption); 640x427 JPEGs\n")
    print(
        f"{'photos':>7} {'write s':>8} {'again s':>8} {'MB':>7} {'open s':>7} {'DOM s':>6} {'heap MB':>8} {'drawn':>6}"
    )
    for n in [int(c) for c in args.counts.split(",")]:
        built = cache_root() / "bench" / f"report-{n}"  # photos + store, made once (minutes at 10,000)
        if not (built / ".complete").exists():
            shutil.rmtree(built, ignore_errors=True)
            make_store(built / "photos", built / "results.sqlite", n)
            (built / ".complete").write_text("")
        with tempfile.TemporaryDirectory(prefix="mltag-bench-report-") as tmp:
            store, report = Path(tmp) / "results.sqlite", Path(tmp) / "report.html"
            shutil.copy(built / "results.sqlite", store)  # a fresh copy: each run opens the store anew
            walls = []
            for _ in range(2):  # thumbnails made (an empty thumbnail cache), then from the cache
                # This checkout's orchestrator (PYTHONPATH first), so another checkout's code can be compared.
                start = time.perf_counter()
                proc = subprocess.run(
                    [sys.executable, "-m", "orchestrator", "report", "--store", str(store), "--html", str(report)],
                    capture_output=True,
                    text=True,
                    cwd=PROJECT_ROOT,
                    env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "MLTAG_CACHE": str(Path(tmp) / "cache")},
                )
                walls.append(time.perf_counter() - start)
                if proc.returncode != 0:
                    print(f"report failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
                    return 1
            size = report.stat().st_size / 2**20
            head = f"{n:>7} {walls[0]:>8.1f} {walls[1]:>8.1f} {size:>7.1f}"
            if args.no_browser:
                print(head, flush=True)
                continue
            seen = open_in_chromium(report)
            print(
                f"{head} {seen['load_s']:>7.2f} {seen['dom_s']:>6.2f} {seen['heap_mb']:>8.0f} {seen['drawn']:>6.0f}"
                f"   (load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    print(
        "\nwrite s: `mltag report --html` with an empty thumbnail cache; again s: the same report written again "
        "(thumbnails from the cache that mltag serve shares)\nopen s: navigation start to the load event (the page "
        "is drawn and its filters work); drawn: image articles in the DOM at that moment"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
