"""The ASGI app of `mltag serve` (Starlette): pages, a JSON API, thumbnails, labels.

Pages are Jinja2 templates (autoescaped: model output is untrusted text) with one static script and
one stylesheet, under a Content-Security-Policy that allows only this app's own files: no inline
script, nothing from the network. The script writes every model string with textContent.

Photos and thumbnails are addressed by sha256 and looked up in the browse index (the path the store
recorded); a path never comes from a request.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from orchestrator.archives import find_member
from orchestrator.document import ModelEntry
from orchestrator.errors import LabelsError, StoreError
from orchestrator.report.html import _num, _secs
from orchestrator.serve.index import SORTS, BrowseIndex, Filters
from orchestrator.serve.photos import photo_view
from orchestrator.serve.queue import LabelQueue
from orchestrator.serve.security import TOKEN_COOKIE, Guard
from orchestrator.serve.thumbs import SIZES, Thumbnails
from orchestrator.store import ResultStore
from orchestrator.store.documents import evaluate_store

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_SHA = re.compile(r"[0-9a-f]{64}")
STATIC = Path(__file__).parent / "static"
REPORT_CSS = Path(__file__).parent.parent / "report" / "templates" / "report.css"
PLACEHOLDER = (STATIC / "placeholder.svg").read_bytes() if (STATIC / "placeholder.svg").exists() else b""


@dataclass
class Served:
    """What the app serves: the open store, its browse index, the thumbnails, who labels."""

    store: ResultStore
    index: BrowseIndex
    thumbs: Thumbnails
    normalise: Callable[[str], str]
    token: str
    who: str
    entries: list[ModelEntry]
    loopback: bool = True
    queue: LabelQueue | None = None
    _write: threading.Lock = field(default_factory=threading.Lock)


@cache
def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("orchestrator.serve", "templates"), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    env.filters["num"] = _num
    env.filters["secs"] = _secs
    return env


def _filters(request: Request) -> Filters:
    q = request.query_params
    sort = q.get("sort") or "path"
    return Filters(
        tag=q.get("tag") or None,
        model=q.get("model") or None,
        status=q.get("status") or None,
        labelled=q.get("labelled") or None,
        folder=q.get("folder") or None,
        sort=sort if sort in SORTS else "path",
    )


def _sha(request: Request) -> str | None:
    sha = str(request.path_params.get("sha256", "")).lower()
    return sha if _SHA.fullmatch(sha) else None


def _page(request: Request, served: Served, template: str, **context: Any) -> HTMLResponse:
    config = {"token": served.token, "models": served.index.models}
    html = _env().get_template(template).render(config=config, models=served.index.models, **context)
    response = HTMLResponse(
        html,
        headers={
            "Content-Security-Policy": CSP,
            "Referrer-Policy": "same-origin",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )
    if not served.loopback and request.query_params.get("token") == served.token:
        response.set_cookie(TOKEN_COOKIE, served.token, httponly=True, samesite="strict")
    return response


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(
        data, status_code=status, headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    )


def _error(text: str, status: int) -> JSONResponse:
    return _json({"error": text}, status)


def build_app(served: Served, host: str = "127.0.0.1", port: int = 8765) -> Starlette:
    """The app; `host`/`port` are those served (the Host header must name them)."""
    index = served.index

    async def grid(request: Request) -> Response:
        return _page(request, served, "grid.html.j2", sorts=list(SORTS), total=index.count())

    async def photo(request: Request) -> Response:
        sha = _sha(request)
        image = index.image(sha) if sha else None
        if sha is None or image is None:
            return HTMLResponse("no such photo in this store", status_code=404)
        view = await asyncio.to_thread(photo_view, served.store, served.entries, sha, image["path"], served.normalise)
        near = index.neighbours(sha, _filters(request))
        return _page(
            request,
            served,
            "photo.html.j2",
            photo=view,
            near=near,
            query=request.url.query,
            vanished=not image["source"].exists() and find_member(image["source"]) is None,
        )

    async def api_images(request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit", "60"))
            page = await asyncio.to_thread(index.page, _filters(request), request.query_params.get("cursor"), limit)
        except ValueError as exc:
            return _error(str(exc), 400)
        return _json(page)

    async def api_tags(request: Request) -> Response:
        return _json(
            index.tags(request.query_params.get("q", ""), min(50, int(request.query_params.get("limit", "20") or 20)))
        )

    async def api_folders(request: Request) -> Response:
        return _json(index.folders())

    async def api_photo(request: Request) -> Response:
        sha = _sha(request)
        image = index.image(sha) if sha else None
        if sha is None or image is None:
            return _error("no such photo in this store", 404)
        view = await asyncio.to_thread(photo_view, served.store, served.entries, sha, image["path"], served.normalise)
        return _json({**view, "near": index.neighbours(sha, _filters(request))})

    async def thumb(request: Request) -> Response:
        sha = _sha(request)
        size = int(request.path_params["size"])
        image = index.image(sha) if sha else None
        if sha is None or image is None or size not in SIZES:
            return Response(status_code=404)
        data, why = await asyncio.wrap_future(served.thumbs.get(sha, image["source"], size))
        if data is None:
            return Response(
                PLACEHOLDER,
                media_type="image/svg+xml",
                headers={
                    "X-Mltag-Thumb-Error": (why or "")[:120].encode("ascii", "replace").decode(),
                    "Cache-Control": "no-store",
                },
            )
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    async def api_label(request: Request) -> Response:
        body = await _body(request)
        sha = str(body.get("sha256", "")).lower()
        tag, verdict = body.get("tag"), body.get("verdict")
        if not _SHA.fullmatch(sha) or index.image(sha) is None:
            return _error("no such photo in this store", 404)
        if not isinstance(tag, str) or verdict not in ("yes", "no", None):
            return _error("give a tag and a verdict: yes, no or null (no verdict)", 400)
        name = served.normalise(tag) or tag.strip()
        try:
            await asyncio.to_thread(_set_label, served, sha, name, verdict)
        except LabelsError as exc:
            return _error(str(exc), 400)
        except StoreError as exc:  # locked by another process past the busy timeout: the page says so
            return _error(str(exc), 503)
        return _json({"sha256": sha, "tag": name, "verdict": verdict})

    async def api_done(request: Request) -> Response:
        body = await _body(request)
        sha = str(body.get("sha256", "")).lower()
        if not _SHA.fullmatch(sha) or index.image(sha) is None:
            return _error("no such photo in this store", 404)
        done = bool(body.get("done", True))
        try:
            await asyncio.to_thread(_set_done, served, sha, done)
        except StoreError as exc:
            return _error(str(exc), 503)
        return _json({"sha256": sha, "done": done})

    async def api_ranking(request: Request) -> Response:
        result = await asyncio.to_thread(_ranking, served)
        return _json(result)

    async def api_next(request: Request) -> Response:
        after = request.query_params.get("after")
        if served.queue is not None:
            sha = await asyncio.to_thread(served.queue.next, after)
        else:  # no queue: the next photo not yet done, in the grid's order
            page = index.page(Filters(labelled="not-done"), None, 2, count=False)
            sha = next((i["sha256"] for i in page["items"] if i["sha256"] != after), None)
        return _json({"sha256": sha})

    async def report_css(request: Request) -> Response:
        return Response(REPORT_CSS.read_bytes(), media_type="text/css")

    routes = [
        Route("/", grid),
        Route("/photo/{sha256}", photo),
        Route("/api/images", api_images),
        Route("/api/tags", api_tags),
        Route("/api/folders", api_folders),
        Route("/api/photo/{sha256}", api_photo),
        Route("/api/ranking", api_ranking),
        Route("/api/next", api_next),
        Route("/api/label", api_label, methods=["POST"]),
        Route("/api/done", api_done, methods=["POST"]),
        Route("/thumb/{sha256}/{size:int}", thumb),
        Route("/static/report.css", report_css),  # the HTML report's own stylesheet: one look, one file
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(Guard, host=host, port=port, token=served.token)
    return app


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _set_label(served: Served, sha: str, tag: str, verdict: str | None) -> None:
    with served._write:
        if verdict is None:
            served.store.remove_label(sha, tag, served.who)
        else:
            served.store.set_label(sha, tag, verdict == "yes", served.who)
        _relabel(served, sha)


def _set_done(served: Served, sha: str, done: bool) -> None:
    with served._write:
        if done:
            served.store.mark_done(sha, served.who)
            if served.queue is not None:
                served.queue.marked_done()
        else:
            served.store.mark_undone(sha, served.who)
        _relabel(served, sha)


def _relabel(served: Served, sha: str) -> None:
    """The index's labelled / done mark of one photo, as the store now holds it (the grid's filter)."""
    labels = served.store.labels_of(sha)
    if labels.verdicts or labels.done:
        served.index.set_labelled([(sha, labels.done)])
    else:
        served.index.unset_labelled(sha)


def _ranking(served: Served) -> dict[str, Any]:
    """`mltag eval`'s ranking on the store's labels (the photos marked done), intervals included."""
    return evaluate_store(served.store, served.normalise, served.index.under)
