"""The HTTP face of `retrieve serve`: a JSON API and the page that browses it (FastAPI).

Thin, like the click commands: each route parses, calls ``indexes.search.service.IndexService``
(the model and the index, loaded once, queries batched) and formats. Files are only ever
read by id, from the index's database; no route writes anything or fetches a URL. The
interactive documentation (/docs, /redoc) is served from fastapi-offline's copy of Swagger UI
and ReDoc: it works without a network.
"""

from __future__ import annotations

import asyncio
import hmac
import io
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as ItemId
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from cli import dup_api, previews
from cli.previews import BROWSER_TYPES
from cli import schemas as s
from cli.output import to_json
from indexes.config import MAX_DIFFERENCE, MIN_SIMILARITY
from indexes.duplicates import report as dup_report
from indexes.duplicates.jobs import Busy, Cancelled
from indexes.search.browse import SORTS
from indexes.search.service import IndexService, ItemGone, UnknownItem, WeightsChanged
from retrieval import __version__
from retrieval.errors import FactoryError, IndexCorrupt, NotAnImage, RetrieveError

STATIC = Path(__file__).parent / "static"
DEFAULT_K = 10
MAX_K = 1000  # neighbours per query
MAX_QUERIES = 64  # images in one search request
MAX_PAGE = 1000  # images in one page of /api/items
# An upload over --max-upload-mb is still read, and dropped, up to this many bytes: a client
# that sends its whole body before it reads the answer (urllib, requests, a browser's fetch)
# then gets the 413 and its message, not a reset connection. Past it the connection closes.
DRAIN_BYTES = 256 * 2**20
STATUS = {UnknownItem: 404, ItemGone: 410, WeightsChanged: 409, NotAnImage: 400,
          FactoryError: 400, IndexCorrupt: 503, Cancelled: 409, Busy: 409}
Sort = Literal[tuple(SORTS)]  # type: ignore[valid-type]


class JSON(JSONResponse):
    """JSON as `query --json` writes it: file names that are not UTF-8 keep their bytes (a
    JSONResponse, so that OpenAPI declares answers by their schema, not as strings)."""

    def render(self, content) -> bytes:
        return to_json(content).encode()


def error(status: int, message: str, headers: dict | None = None) -> JSON:
    return JSON({"error": " ".join(message.split())}, status_code=status, headers=headers)


K = Query(DEFAULT_K, ge=1, le=MAX_K, description="neighbours per query")
ITEM = ItemId(ge=0, lt=2**63, description="an id from /api/items")
NPROBE = Query(None, ge=1, le=65536, description="IVF lists visited")
NEAR = Query(None, ge=0, description="only neighbours this close (fc7 distance)")


def create_app(service: IndexService, token: str | None = None,
               max_upload_mb: float = 20.0, allow_actions: bool = False,
               move_to: str | None = None) -> FastAPI:
    """The app serving ``service``; with ``token``, every /api route asks for it (header
    ``Authorization: Bearer TOKEN`` or ``?token=TOKEN``, for <img> tags). ``allow_actions``
    (which needs a token): duplicates plans may be applied, moves only into ``move_to``."""
    if allow_actions and not token:
        raise ValueError("applying plans from the page needs a token")
    app = FastAPIOffline(title="retrieve", version=__version__, default_response_class=JSON,
                         description="Content-based image retrieval with AlexNet fc7 features "
                                     "and FAISS: the API of `retrieve serve`.",
                         favicon_url="/favicon.ico")
    _errors(app)
    _describe(app, token)

    def authorised(request: Request) -> None:
        if token is None:
            return
        given = request.query_params.get("token", "")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:]
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "a valid token is needed (Authorization: Bearer TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})

    api = [Depends(authorised)]
    acting = {"allow_actions": allow_actions, "move_to": move_to if allow_actions else None}
    for router in (_index_routes(service, max_upload_mb, acting),
                   _search_routes(service, max_upload_mb),
                   _browse_routes(service), dup_api.router(service, allow_actions, move_to)):
        app.include_router(router, dependencies=api)
    _page(app)
    return app


def _index_routes(service: IndexService, max_upload_mb: float, acting: dict) -> APIRouter:
    """What the index is, what this server accepts, and the duplicates among the images."""
    api = APIRouter(prefix="/api")

    @api.get("/info", responses={200: {"model": s.Info}, **s.errors(401, 503)})
    async def info():
        """What `retrieve info --json` prints."""
        return await run_in_threadpool(service.info)

    @api.get("/limits", responses={200: {"model": s.Limits}, **s.errors(401)})
    async def limits():
        """What this server accepts (the page checks an upload's size before sending it, and
        offers to apply duplicates plans only where it may)."""
        return {"max_upload_bytes": int(max_upload_mb * 2**20), "max_k": MAX_K,
                "max_queries": MAX_QUERIES, **acting}

    @api.get("/duplicates",
             responses={200: {"model": s.Duplicates}, **s.errors(400, 401, 409, 503)})
    async def duplicates(threshold: float | None = Query(None, ge=0),
                         verify: bool = True,
                         min_similarity: float = Query(MIN_SIMILARITY, ge=-1, le=1),
                         max_difference: float = Query(MAX_DIFFERENCE, ge=0)):
        """What `retrieve duplicates --json` prints (computed once per generation and
        settings, as the job of /api/duplicates/start: joined if it is running)."""
        config = dup_api.search_config(threshold, verify, min_similarity, max_difference)
        report = await run_in_threadpool(service.duplicates, config)
        return dup_report.to_json(report)

    return api


def _search_routes(service: IndexService, max_upload_mb: float) -> APIRouter:
    """The nearest images of uploaded ones, and of indexed ones."""
    api = APIRouter(prefix="/api")

    @api.post("/search", openapi_extra=s.UPLOAD, responses={
        200: {"model": s.Search}, **s.errors(400, 401, 409, 411, 413, 503)})
    async def search(request: Request, k: int = K, nprobe: int | None = NPROBE,
                     max_distance: float | None = NEAR):
        """The k nearest indexed images of each uploaded image (multipart field `image`,
        repeated for several)."""
        await _refuse_large(request, int(max_upload_mb * 2**20), max_upload_mb)
        form = await request.form(max_files=MAX_QUERIES)
        uploads = [f for f in form.getlist("image") if hasattr(f, "read")]
        if not uploads:
            raise HTTPException(400, "no image: send it as the multipart field 'image'")
        names, prepared = [], []
        for upload in uploads:
            data = await upload.read()
            names.append(upload.filename or "upload")
            try:
                prepared.append(await run_in_threadpool(service.prepare, io.BytesIO(data)))
            except NotAnImage as e:
                raise HTTPException(400, f"{names[-1]}: {e.reason}") from None
        found = await asyncio.wrap_future(service.search(prepared, k, nprobe, max_distance))
        if len(found) == 1:
            return {"k": k, "results": _results(found[0], service)}
        return {"k": k, "queries": [{"query": n, "results": _results(r, service)}
                                    for n, r in zip(names, found)]}

    @api.get("/items/{item}/neighbours", responses={
        200: {"model": s.Neighbours}, **s.errors(400, 401, 404, 410, 503)})
    async def neighbours(item: int = ITEM, k: int = K, nprobe: int | None = NPROBE,
                         max_distance: float | None = NEAR):
        """The k nearest other indexed images of an indexed one (its exact copies among them,
        itself not)."""
        found = await asyncio.wrap_future(service.neighbours(item, k, nprobe, max_distance))
        return {"k": k, "id": item, "results": _results(found[0], service)}

    return api


def _browse_routes(service: IndexService) -> APIRouter:
    """The collection a page at a time, its folders, and each image: facts and pictures."""
    api = APIRouter(prefix="/api")

    @api.get("/folders", responses={200: {"model": s.Folders}, **s.errors(401)})
    async def folders():
        """Every folder that holds indexed images, with how many it holds itself."""
        root, found = await run_in_threadpool(service.folders)
        return {"root": root, "folders": [{"path": f, "images": n} for f, n in found]}

    @api.get("/items", responses={200: {"model": s.Items}, **s.errors(400, 401)})
    async def items(offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=MAX_PAGE),
                    folder: str | None = Query(None, description="only under this folder"),
                    name: str | None = Query(None, description="only paths that hold this "
                                             "text below the root (case-insensitive for A-Z)"),
                    sort: Sort = Query("path", description="the order of the images")):
        """The indexed images, a page at a time, filtered and sorted."""
        total, page = await run_in_threadpool(service.items, offset, limit, folder, name, sort)
        return {"total": total, "offset": offset, "limit": limit,
                "items": [{"id": i, "path": p} for i, p in page]}

    @api.get("/items/{item}", responses={
        200: {"model": s.ItemFacts}, **s.errors(400, 401, 404, 410)})
    async def item_facts(item: int = ITEM):
        """An indexed image: its path, name, folder, size, dates and pixels."""
        facts = await run_in_threadpool(service.facts, item)
        return await run_in_threadpool(previews.describe, item, facts)

    def picture(route: str, what: str, make):
        @api.get(f"/items/{{item}}/{route}", response_class=Response, summary=route.title(),
                 description=what, responses={**s.image("image/jpeg", what),
                                              **s.errors(400, 401, 404, 410)})
        async def answer(item: int = ITEM):
            path = await run_in_threadpool(service.path, item)
            data = await run_in_threadpool(make, item, path)
            return Response(data, media_type="image/jpeg",
                            headers={"Cache-Control": "private, max-age=3600"})

    picture("thumbnail", f"A JPEG of at most {previews.THUMBNAIL} pixels a side (cached).",
            previews.thumbnail)
    picture("preview", f"A JPEG of at most {previews.PREVIEW} pixels a side, whatever the "
            "file's format (cached).", previews.preview)

    @api.get("/items/{item}/image", response_class=FileResponse, responses={
        **s.image("image/*", "the file itself, its type by content; a JPEG of the whole "
                             "picture where browsers cannot show the file"),
        **s.errors(400, 401, 404, 410)})
    async def image(item: int = ITEM):
        """The indexed file itself, with its content type; a file browsers cannot show
        (HEIC, RAW, TIFF, JPEG XL, ...) as a JPEG of the whole picture, decoded as indexed."""
        path = await run_in_threadpool(service.path, item)
        media_type = await run_in_threadpool(previews.media_type, item, path)
        if media_type in BROWSER_TYPES:
            return FileResponse(path, media_type=media_type)
        data = await run_in_threadpool(previews.rendition, item, path)
        return Response(data, media_type="image/jpeg")

    return api


async def _refuse_large(request: Request, limit: int, max_upload_mb: float) -> None:
    """411 without a Content-Length, 413 over ``limit`` bytes: the body read and dropped up
    to DRAIN_BYTES first, so that the answer reaches a client still sending it."""
    length = request.headers.get("content-length")
    if length is None:
        raise HTTPException(411, "the upload needs a Content-Length")
    if not length.isdigit():
        raise HTTPException(400, f"Content-Length: not a number ({length[:40]!r})")
    if int(length) <= limit:
        return
    if int(length) <= DRAIN_BYTES:
        async for _ in request.stream():
            pass
    raise HTTPException(413, f"the upload is larger than {max_upload_mb:g} MB (--max-upload-mb)",
                        headers={"Connection": "close"})


def _results(found, service: IndexService) -> list[dict]:
    scale = service.scale
    return [{"rank": r, "id": i, "path": p, "distance": d,
             "closer_than": None if scale is None else scale.closer_than(d)}
            for r, (i, p, d) in enumerate(found, 1)]


def _page(app: FastAPI) -> None:
    """The page (cli/static), its icon, and its files."""

    @app.get("/", include_in_schema=False, response_class=FileResponse)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False, response_class=FileResponse)
    async def icon():
        return FileResponse(STATIC / "icon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def _describe(app: FastAPI, token: str | None) -> None:
    """/openapi.json as the server answers: errors as their ``{"error"}`` with the statuses
    each route declares (no 422: a bad parameter is a 400), the token as a bearer scheme."""

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description,
                          routes=app.routes)
        for path, operations in doc["paths"].items():
            for operation in operations.values():
                operation["responses"].pop("422", None)
                if token is None:
                    operation["responses"].pop("401", None)
                elif path.startswith("/api/"):
                    operation["security"] = [{"token": []}]
        components = doc.setdefault("components", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.get("schemas", {}).pop(name, None)
        if token is not None:
            components["securitySchemes"] = {"token": {"type": "http", "scheme": "bearer"}}
        app.openapi_schema = doc
        return doc

    app.openapi = openapi


def _errors(app: FastAPI) -> None:
    """Every error is ``{"error": "one line"}`` with its status, never a traceback."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return error(400, f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(HTTPException)
    async def http(request, exc: HTTPException):
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        return error(exc.status_code, detail, getattr(exc, "headers", None))

    @app.exception_handler(RetrieveError)
    async def ours(request, exc: RetrieveError):
        status = next((s for t, s in STATUS.items() if isinstance(exc, t)), 400)
        return error(status, str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request, exc: Exception):
        return error(500, f"internal error ({type(exc).__name__})")
