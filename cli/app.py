"""The HTTP face of `retrieve serve`: a JSON API and the page that browses it (FastAPI).

Thin, like the click commands: each route parses, calls ``indexes.service.IndexService``
(the model and the index, loaded once, queries batched) and formats. Files are only ever
read by id, from the index's database; no route writes anything or fetches a URL.
"""

from __future__ import annotations

import asyncio
import hmac
import io
import os
from functools import lru_cache
from pathlib import Path

from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as ItemId
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, ImageOps
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from cli import dup_api
from cli.output import to_json
from indexes import dup_report
from indexes.config import MAX_DIFFERENCE, MIN_SIMILARITY, DuplicatesConfig
from indexes.service import IndexService, ItemGone, UnknownItem, WeightsChanged
from retrieval import __version__, formats
from retrieval.errors import FactoryError, IndexCorrupt, NotAnImage, RetrieveError
from retrieval.images import load_image

STATIC = Path(__file__).parent / "static"
DEFAULT_K = 10
MAX_K = 1000  # neighbours per query
MAX_QUERIES = 64  # images in one search request
THUMBNAIL = 256  # pixels, the longer side
THUMBNAIL_QUALITY = 85
THUMBNAILS_CACHED = 4096  # about 10 KB each
# What every current browser shows in an <img>; other files are sent as a JPEG rendition.
BROWSER_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/avif",
                           "image/bmp"})
RENDITION_QUALITY = 90
STATUS = {UnknownItem: 404, ItemGone: 410, WeightsChanged: 409, NotAnImage: 400,
          FactoryError: 400, IndexCorrupt: 503}


class JSON(Response):
    """JSON as `query --json` writes it: file names that are not UTF-8 keep their bytes."""

    media_type = "application/json"

    def render(self, content) -> bytes:
        return to_json(content).encode()


def error(status: int, message: str, headers: dict | None = None) -> JSON:
    return JSON({"error": " ".join(message.split())}, status_code=status, headers=headers)


def create_app(service: IndexService, token: str | None = None,
               max_upload_mb: float = 20.0, allow_actions: bool = False,
               move_to: str | None = None) -> FastAPI:
    """The app serving ``service``; with ``token``, every /api route asks for it (header
    ``Authorization: Bearer TOKEN`` or ``?token=TOKEN``, for <img> tags). ``allow_actions``
    (which needs a token): duplicates plans may be applied, moves only into ``move_to``."""
    if allow_actions and not token:
        raise ValueError("applying plans from the page needs a token")
    app = FastAPI(title="retrieve", version=__version__, default_response_class=JSON,
                  description="Content-based image retrieval with AlexNet fc7 features and FAISS")
    _errors(app)

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
    k_query = Query(DEFAULT_K, ge=1, le=MAX_K, description="neighbours per query")
    item_id = ItemId(ge=0, lt=2**63, description="an id from /api/items")
    nprobe_query = Query(None, ge=1, le=65536, description="IVF lists visited")
    near_query = Query(None, ge=0, description="only neighbours this close (fc7 distance)")

    @app.get("/api/info", dependencies=api)
    async def info():
        """What `retrieve info --json` prints."""
        return await run_in_threadpool(service.info)

    @app.get("/api/items", dependencies=api)
    async def items(offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=1000)):
        """The indexed images, in id order."""
        total, page = await run_in_threadpool(service.items, offset, limit)
        return {"total": total, "offset": offset, "limit": limit,
                "items": [{"id": i, "path": p} for i, p in page]}

    @app.post("/api/search", dependencies=api)
    async def search(request: Request, k: int = k_query, nprobe: int | None = nprobe_query,
                     max_distance: float | None = near_query):
        """The k nearest indexed images of each uploaded image (multipart field `image`,
        repeated for several)."""
        length = request.headers.get("content-length")
        if length is None:
            raise HTTPException(411, "the upload needs a Content-Length")
        if int(length) > max_upload_mb * 2**20:
            raise HTTPException(413, f"the upload is larger than {max_upload_mb:g} MB "
                                     "(--max-upload-mb)")
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
            return {"k": k, "results": _results(found[0])}
        return {"k": k, "queries": [{"query": n, "results": _results(r)}
                                    for n, r in zip(names, found)]}

    @app.get("/api/items/{item}/neighbours", dependencies=api)
    async def neighbours(item: int = item_id, k: int = k_query,
                         nprobe: int | None = nprobe_query,
                         max_distance: float | None = near_query):
        """The k nearest indexed images of an indexed one (itself first)."""
        found = await asyncio.wrap_future(service.neighbours(item, k, nprobe, max_distance))
        return {"k": k, "id": item, "results": _results(found[0])}

    @app.get("/api/items/{item}/thumbnail", dependencies=api, response_class=Response)
    async def thumbnail(item: int = item_id):
        """A small JPEG of the indexed image (cached)."""
        path = await run_in_threadpool(service.path, item)
        data = await run_in_threadpool(_thumbnail_of, item, path)
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/items/{item}/image", dependencies=api, response_class=FileResponse)
    async def image(item: int = item_id):
        """The indexed file itself, with its content type; a file browsers cannot show
        (HEIC, RAW, TIFF, JPEG XL, ...) as a JPEG of the whole picture, decoded as indexed."""
        path = await run_in_threadpool(service.path, item)
        media_type = await run_in_threadpool(_media_type, item, path)
        if media_type in BROWSER_TYPES:
            return FileResponse(path, media_type=media_type)
        data = await run_in_threadpool(_rendition, item, path)
        return Response(data, media_type="image/jpeg")

    @app.get("/api/duplicates", dependencies=api)
    async def duplicates(threshold: float | None = Query(None, ge=0),
                         verify: bool = True,
                         min_similarity: float = Query(MIN_SIMILARITY, ge=-1, le=1),
                         max_difference: float = Query(MAX_DIFFERENCE, ge=0)):
        """What `retrieve duplicates --json` prints (computed once per generation)."""
        config = DuplicatesConfig(threshold=threshold, verify=verify,
                                  min_similarity=min_similarity, max_difference=max_difference)
        report = await run_in_threadpool(service.duplicates, config)
        return dup_report.to_json(report)

    app.include_router(dup_api.router(service, allow_actions, move_to), dependencies=api)

    @app.get("/", include_in_schema=False, response_class=FileResponse)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _results(found) -> list[dict]:
    return [{"rank": r, "id": i, "path": p, "distance": d}
            for r, (i, p, d) in enumerate(found, 1)]


def _stamp(item: int, path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError as e:
        raise ItemGone(f"item {item}: {path} can no longer be read ({e.strerror})") from None
    return st.st_size, st.st_mtime_ns


def _thumbnail_of(item: int, path: str) -> bytes:
    return _thumbnail(item, path, *_stamp(item, path))


@lru_cache(maxsize=THUMBNAILS_CACHED)
def _thumbnail(item: int, path: str, size: int, mtime_ns: int) -> bytes:
    """JPEG bytes of the image at ``path`` (as it is at ``size``, ``mtime_ns``)."""
    try:
        img = load_image(path, draft_size=THUMBNAIL)
    except NotAnImage as e:
        raise ItemGone(f"item {item}: {path} can no longer be read ({e.reason})") from None
    img = ImageOps.contain(img, (THUMBNAIL, THUMBNAIL))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=THUMBNAIL_QUALITY)
    return out.getvalue()


def _rendition(item: int, path: str) -> bytes:
    """The whole picture at ``path`` as JPEG bytes, through the one decode."""
    try:
        img = load_image(path)
    except NotAnImage as e:
        raise ItemGone(f"item {item}: {path} can no longer be read ({e.reason})") from None
    out = io.BytesIO()
    img.save(out, "JPEG", quality=RENDITION_QUALITY)
    return out.getvalue()


def _media_type(item: int, path: str) -> str:
    """The file's type by its content (a PNG named .jpg is image/png); a RAW file's
    own type is of no use to a browser (it is sent as a rendition)."""
    if formats.is_raw(path):
        return "image/x-raw"
    formats.register()
    try:
        with Image.open(path) as img:
            return Image.MIME.get(img.format, "application/octet-stream")
    except (OSError, ValueError, SyntaxError):
        _stamp(item, path)  # ItemGone if it cannot be read at all
        return "application/octet-stream"


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
