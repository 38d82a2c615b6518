"""`mltag serve` at archive size: printed figures, not a timed test.

Writes a results store of N photos (default 100,000) x 3 models directly (no runner, no model:
tests/serve_store.py), then, in a fresh process (the server's own memory, not the writer's), builds the
browse index and times the app's requests in-process through Starlette's TestClient (server time, no
network): the first grid page and the p95 over pages (plain, by tag, by disagreement), one photo's
view, a label write, the ranking at 1,000 photos labelled done, a thumbnail of a 24 MP JPEG, and the
server's RSS.

    .venv/bin/python bench/serve.py [--photos 100000] [--labelled 1000] [--keep DIR]

Goals (issue 19): first page <= 300 ms, photo view and label write <= 100 ms, thumbnail <= 80 ms per
24 MP JPEG, RSS <= 300 MB.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(round(0.95 * len(values))) - 1)]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def write_store(folder: Path, photos: int, labelled: int) -> None:
    from tests.serve_store import fill, new_store, refs, truth_of

    started = time.perf_counter()
    db = new_store(folder / "store.sqlite")
    images = list(refs(folder / "archive", photos))
    for i in range(0, photos, 10_000):
        fill(db, images[i : i + 10_000], start=i)
    db.import_labels(
        {images[i].sha256: truth_of(i) for i in range(0, photos, max(1, photos // labelled))[:labelled]}, "bench"
    )
    db.close()
    size = (folder / "store.sqlite").stat().st_size / 1e6
    print(
        f"store: {photos} photos x 3 models written in {time.perf_counter() - started:.1f} s ({size:.0f} MB), "
        f"{labelled} photos labelled done"
    )


def big_jpeg(path: Path) -> None:
    """A 6000 x 4000 (24 MP) camera-like JPEG: a gradient with noise (compresses like a photo), EXIF rotated."""
    from PIL import Image

    small = Image.effect_noise((750, 500), 40).convert("RGB")
    photo = Image.merge(
        "RGB", [small.getchannel(0), Image.linear_gradient("L").resize((750, 500)), small.getchannel(2)]
    ).resize((6000, 4000), Image.Resampling.BILINEAR)
    noise = Image.effect_noise((6000, 4000), 25).convert("RGB")
    photo = Image.blend(photo, noise, 0.3)
    exif = Image.Exif()
    exif[0x0112] = 6
    photo.save(path, "JPEG", quality=90, exif=exif)


def measure(folder: Path) -> None:
    import psutil
    from starlette.testclient import TestClient

    from orchestrator.compare import Normaliser
    from orchestrator.report.thumbnails import thumbnail_jpeg
    from orchestrator.serve.app import build_app
    from orchestrator.serve.server import prepare
    from orchestrator.store import ResultStore

    base = "http://127.0.0.1:8765"
    shutil.rmtree(folder / "cache", ignore_errors=True)  # the first start builds the browse index
    db = ResultStore(folder / "store.sqlite", create=False)
    started = time.perf_counter()
    served = prepare(db, None, Normaliser(), cache=folder / "cache", who="bench")
    print(
        f"browse index: {served.index.count()} photos, built in {time.perf_counter() - started:.1f} s "
        "(once per change of the store; a restart reuses it)"
    )
    assert served.queue is not None
    served.queue.wait()
    started = time.perf_counter()
    served.index.close()
    served = prepare(db, None, Normaliser(), cache=folder / "cache", who="bench")
    print(f"start with the index built: {time.perf_counter() - started:.2f} s")
    assert served.queue is not None
    served.queue.wait()
    print(
        f"label-next queue (queue_from_store on a background thread): ready "
        f"{time.perf_counter() - started:.1f} s after start"
    )
    client = TestClient(build_app(served, "127.0.0.1", 8765), base_url=base)

    def timed(method: str, url: str, **kwargs: object) -> tuple[float, object]:
        t = time.perf_counter()
        response = client.request(method, url, **kwargs)  # type: ignore[arg-type]
        elapsed = time.perf_counter() - t
        assert response.status_code == 200, (url, response.status_code, response.text[:300])
        return elapsed, response

    first, _ = timed("GET", "/api/images?limit=60")
    page_html, _ = timed("GET", "/")
    print(f"first grid page (60 photos, with the total): {_ms(first)}   the grid's HTML: {_ms(page_html)}")
    for label, query in (
        ("pages in path order", ""),
        ("pages of tag=rust", "&tag=rust"),
        ("pages by disagreement", "&sort=disagreement"),
        ("pages of folder + model + status", f"&folder={folder / 'archive'}&model=noisy&status=ok"),
    ):
        times, cursor = [], None
        for _ in range(50):
            elapsed, response = timed("GET", f"/api/images?limit=60{query}" + (f"&cursor={cursor}" if cursor else ""))
            times.append(elapsed)
            cursor = response.json()["next"]  # type: ignore[attr-defined]
            if cursor is None:
                break
        print(f"{label:33s}: p50 {_ms(statistics.median(times))}  p95 {_ms(_p95(times))}  ({len(times)} pages)")
    for label, query in (
        ("tag=rust sorted by consensus", "&tag=rust&sort=consensus"),
        ("folder + model + status", f"&folder={folder / 'archive'}&model=noisy&status=ok"),
        ("not labelled, by disagreement", "&labelled=unlabelled&sort=disagreement"),
    ):
        first, _ = timed("GET", f"/api/images?limit=60{query}")
        print(f"first page (with the total) of {label}: {_ms(first)}")
    sample = random.Random(1).sample(range(served.index.count()), 50)
    shas = _shas(served, sample)
    times = [timed("GET", f"/photo/{sha}")[0] for sha in shas]
    print(f"photo view (page HTML):           p50 {_ms(statistics.median(times))}  p95 {_ms(_p95(times))}")
    times = [timed("GET", f"/api/photo/{sha}")[0] for sha in shas]
    print(f"photo view (JSON):                p50 {_ms(statistics.median(times))}  p95 {_ms(_p95(times))}")
    headers = {"X-Mltag-Token": served.token, "Origin": base}
    times = [
        timed("POST", "/api/label", json={"sha256": sha, "tag": "rust", "verdict": "yes"}, headers=headers)[0]
        for sha in shas
    ]
    print(f"label write:                      p50 {_ms(statistics.median(times))}  p95 {_ms(_p95(times))}")
    times = [timed("GET", "/api/ranking")[0] for _ in range(3)]
    labelled = client.get("/api/ranking").json()["labelled"]
    print(f"ranking recompute ({labelled} photos done, 1000 bootstrap resamples): p50 {_ms(statistics.median(times))}")
    times = [timed("GET", "/api/next?after=" + shas[0])[0] for _ in range(5)]
    print(f"label next (the queue):           p50 {_ms(statistics.median(times))}")

    jpeg = folder / "IMG_24MP.jpg"  # made by the writer process: its 300 MB of pixels are not the server's
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        data, error = thumbnail_jpeg(jpeg, 256, optimize=False, draft=1.0)  # as orchestrator/serve/thumbs.py
        runs.append(time.perf_counter() - t)
        assert data is not None, error
    print(
        f"thumbnail of a 24 MP JPEG (6000x4000, EXIF rotated) at 256 px: p50 {_ms(statistics.median(runs))}  "
        f"({jpeg.stat().st_size / 1e6:.1f} MB file)"
    )
    rss = psutil.Process().memory_info().rss / 1e6
    peak = _peak_mb()
    print(f"server RSS after all: {rss:.0f} MB (peak {peak:.0f} MB)")
    served.thumbs.close()
    served.index.close()
    db.close()


def _shas(served: object, sample: list[int]) -> list[str]:
    """The sha256 of photos at these positions (read from the index itself, never guessed)."""
    index = served.index  # type: ignore[attr-defined]
    with index._reading() as db:
        return [db.execute("SELECT sha256 FROM images WHERE id = ?", (i + 1,)).fetchone()[0] for i in sample]


def _peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 1e6  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=100_000)
    parser.add_argument("--labelled", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="write the store here and keep it (default: a temporary folder)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the second process
    args = parser.parse_args()
    if args.measure:
        measure(args.measure)
        return 0
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory(prefix="mltag-bench-serve-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "store.sqlite").exists():
            write_store(folder, args.photos, args.labelled)
        if not (folder / "IMG_24MP.jpg").exists():
            big_jpeg(folder / "IMG_24MP.jpg")
        return subprocess.call([sys.executable, __file__, "--measure", str(folder)])


if __name__ == "__main__":
    sys.exit(main())
