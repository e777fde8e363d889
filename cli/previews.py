"""What `retrieve serve` shows of an indexed file: JPEG thumbnails and previews (cached while
the file is unchanged), the whole picture as a JPEG where browsers cannot show the file, its
type by content, and its facts as it is now."""

from __future__ import annotations

import io
import os
import time
from functools import lru_cache

from PIL import Image

from indexes.search.browse import Facts
from indexes.search.service import ItemGone
from retrieval import formats
from retrieval.errors import NotAnImage
from retrieval.images import image_size, load_image

THUMBNAIL = 256  # pixels, the longer side: a tile of the page's grid
THUMBNAIL_QUALITY = 85
THUMBNAILS_CACHED = 4096  # about 10 KB each
PREVIEW = 1600  # pixels, the longer side: the page's detail view on most screens
PREVIEW_QUALITY = 90
PREVIEWS_CACHED = 32  # about 300 KB each
# What every current browser shows in an <img>; other files are sent as a JPEG rendition.
BROWSER_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp", "image/avif",
                           "image/bmp"})
RENDITION_QUALITY = 90


def _stamp(item: int, path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as e:
        raise ItemGone(f"item {item}: {path} can no longer be read ({e.strerror})") from None


def _jpeg(item: int, path: str, side: int | None, quality: int) -> bytes:
    """JPEG bytes of the image at ``path``, at most ``side`` pixels on its longer side (None:
    the whole picture), through the one decode."""
    try:
        img = load_image(path, draft_size=side)
    except NotAnImage as e:
        raise ItemGone(f"item {item}: {path} can no longer be read ({e.reason})") from None
    if side is not None:
        img.thumbnail((side, side))  # smaller only: a small image is sent as it is
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


@lru_cache(maxsize=THUMBNAILS_CACHED)
def _thumbnail(item: int, path: str, size: int, mtime_ns: int) -> bytes:
    return _jpeg(item, path, THUMBNAIL, THUMBNAIL_QUALITY)


@lru_cache(maxsize=PREVIEWS_CACHED)
def _preview(item: int, path: str, size: int, mtime_ns: int) -> bytes:
    return _jpeg(item, path, PREVIEW, PREVIEW_QUALITY)


def thumbnail(item: int, path: str) -> bytes:
    """A JPEG of at most THUMBNAIL pixels (cached while the file's size and mtime hold)."""
    st = _stamp(item, path)
    return _thumbnail(item, path, st.st_size, st.st_mtime_ns)


def preview(item: int, path: str) -> bytes:
    """A JPEG of at most PREVIEW pixels, whatever the file's format (cached likewise)."""
    st = _stamp(item, path)
    return _preview(item, path, st.st_size, st.st_mtime_ns)


def rendition(item: int, path: str) -> bytes:
    """The whole picture at ``path`` as JPEG bytes (for files browsers cannot show)."""
    return _jpeg(item, path, None, RENDITION_QUALITY)


def _kind(path: str) -> str:
    """The file's type by its content; a RAW file's own type is of no use to a browser."""
    if formats.is_raw(path):
        return "image/x-raw"
    formats.register()
    try:
        with Image.open(path) as img:
            return Image.MIME.get(img.format, "application/octet-stream")
    except (OSError, ValueError, SyntaxError):
        return "application/octet-stream"


def media_type(item: int, path: str) -> str:
    """The file's type by its content (a PNG named .jpg is image/png); ItemGone."""
    _stamp(item, path)
    return _kind(path)


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def describe(item: int, facts: Facts) -> dict:
    """The facts the page's detail view shows of ``item`` (ItemGone when unreadable)."""
    st = _stamp(item, facts.path)
    try:
        width, height = image_size(facts.path)  # from the header, HEIC and RAW too
    except NotAnImage:
        width = height = None
    kind = _kind(facts.path)
    folder, _, name = facts.path.rpartition(os.sep)
    return {"id": item, "path": facts.path, "name": name, "folder": folder or os.sep,
            "bytes": st.st_size, "modified": _iso(st.st_mtime), "indexed": _iso(facts.indexed_at),
            "width": width, "height": height, "media_type": kind}
