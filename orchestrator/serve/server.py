"""Opening the store, the index and the thumbnails, and serving the app with uvicorn."""

from __future__ import annotations

import socket
import sys
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.errors import UsageError
from orchestrator.paths import user_cache_home
from orchestrator.serve.app import Served, build_app
from orchestrator.serve.index import BrowseIndex
from orchestrator.serve.queue import LabelQueue
from orchestrator.serve.security import is_loopback, new_token
from orchestrator.serve.thumbs import Thumbnails
from orchestrator.store import ResultStore
from orchestrator.store.documents import model_entries
from orchestrator.store.labels import default_labeller


def prepare(
    store: ResultStore,
    under: list[Path] | None,
    normalise: Callable[[str], str],
    cache: Path | None = None,
    who: str | None = None,
    host: str = "127.0.0.1",
    say: Callable[[str], None] = lambda _: None,
) -> Served:
    """Everything the app serves, the browse index (re)built when the store changed."""
    home = cache or user_cache_home()
    index = BrowseIndex(store, under, normalise, home / "browse")
    rebuilt = index.open(progress=lambda n: say(f"indexing the store for browsing: {n} photos"))
    if rebuilt:
        say(f"browse index of {index.count()} photo(s) written to {index.path}")
    index.sync_labelled()
    entries = model_entries(store, index.models, under)
    queue = LabelQueue(store, under, normalise, index)
    queue.start()
    return Served(
        store=store,
        index=index,
        thumbs=Thumbnails(home / "thumbnails"),
        normalise=normalise,
        token=new_token(),
        who=who or default_labeller(),
        entries=entries,
        loopback=is_loopback(host),
        queue=queue,
    )


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def url_of(served: Served, host: str, port: int) -> str:
    if host in ("0.0.0.0", "::"):  # every interface: the machine's name, as others will reach it
        host = socket.gethostname()
    name = f"[{host}]" if ":" in host else host
    base = f"http://{name}:{port}/"
    return base if served.loopback else f"{base}?token={served.token}"


def run(served: Served, host: str, port: int | None, open_browser: bool, say: Callable[[str], None]) -> None:
    """Serve until Ctrl-C."""
    import uvicorn

    if port is None:
        port = free_port(host)
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; pass another --port (or none: a "
            "free one is picked)"
        ) from exc
    app = build_app(served, host, port)
    url = url_of(served, host, port)
    say(f"mltag serve: {served.index.count()} photo(s) from {served.store.path}")
    say(f"open {url}   (Ctrl-C stops it)")
    if not served.loopback:
        say(
            "listening beyond this machine: anyone who can reach it and has the URL above (with its token) can "
            "read the results and label"
        )
    if open_browser:
        webbrowser.open(url)
    config: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": 2,
    }
    try:
        uvicorn.Server(uvicorn.Config(app, **config)).run()
    finally:
        served.thumbs.close()
        served.index.close()
        sys.stdout.flush()
