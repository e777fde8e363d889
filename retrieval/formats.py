"""The file formats the one decode reads: Pillow's own, the plugins of the optional extras
(HEIF, AVIF on an older Pillow, JPEG XL) and camera RAW files through rawpy.

A format whose decoder is not installed is still recognised (by extension or signature), so
that its files are counted as skipped with the extra to install instead of being left out.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import BinaryIO

from PIL import Image, ImageFile, features

# Camera RAW files (LibRaw's list, the formats cameras in use write): DNG, Canon CR2/CR3/CRW,
# Nikon NEF/NRW, Sony ARW/SRF/SR2, Fujifilm RAF, Olympus/OM ORF, Panasonic RW2, Leica RWL,
# Pentax PEF, Samsung SRW, Hasselblad 3FR, Phase One IIQ, Epson ERF, Leaf MOS, Minolta MRW,
# Kodak KDC/DCR.
RAW_EXTENSIONS = frozenset({
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf",
    ".rw2", ".rwl", ".pef", ".srw", ".3fr", ".iiq", ".erf", ".mos", ".mrw", ".kdc", ".dcr"})
# What a camera writes beside a RAW file as its own rendering of the same picture.
RENDERED_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".heic", ".heif", ".hif"})
# Extensions of the formats a query or a build meets most, none of them a RAW file's.
_NOT_RAW = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".webp", ".bmp",
                      ".tif", ".tiff", ".heic", ".heif", ".hif", ".avif", ".jxl", ".jp2"})
# Formats Pillow can name but that hold no picture it can decode by itself: a video's header,
# PostScript documents (Ghostscript renders them), and its stubs (scientific data, WMF).
NOT_PICTURES = frozenset({"MPEG", "EPS"})


@dataclass(frozen=True)
class Optional:
    """A format whose decoder comes with an extra: ``pip install 'retrieve[extra]'``."""

    name: str
    extensions: frozenset[str]
    extra: str
    module: str  # imported to register the decoder with Pillow (rawpy: used directly)

    @property
    def missing(self) -> str:
        """The reason a file of this format is skipped when its decoder is absent."""
        return (f"{self.name} needs the {self.extra} extra: "
                f"pip install 'retrieve[{self.extra}]'")


HEIF = Optional("HEIC/HEIF", frozenset({".heic", ".heif", ".hif", ".heics", ".heifs"}),
                "heif", "pillow_heif")
AVIF = Optional("AVIF", frozenset({".avif", ".avifs"}), "avif", "pillow_avif")
JXL = Optional("JPEG XL", frozenset({".jxl"}), "jxl", "pillow_jxl")
RAW = Optional("RAW", RAW_EXTENSIONS, "raw", "rawpy")
OPTIONAL = (HEIF, AVIF, JXL, RAW)

# ISO base media "ftyp" major brands (bytes 8-12): HEIF stills and sequences, AVIF, Canon CR3.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs",
                b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}
_SIGNATURES = (  # formats Pillow itself reads, for files with odd or no extensions
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a", b"GIF89a",
    b"BM",
    b"II*\x00", b"MM\x00*",  # TIFF (and the RAW files built on it: DNG, NEF, ARW, CR2, ...)
)
_RAW_SIGNATURES = (b"IIRO", b"IIRS", b"IIU\x00", b"FUJIFILMCCD-RAW")  # ORF, RW2, RAF
_JXL_SIGNATURES = (b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")

_registered: dict[str, bool] = {}
_lock = threading.Lock()


def register() -> None:
    """Register the decoders of the installed extras with Pillow, once per process. Not on
    import: a query of a JPEG never pays for them (pillow-heif's import alone takes 0.1 s warm
    and seconds cold); ``images.load_image`` calls this when Pillow alone cannot open a file."""
    if _registered:
        return
    with _lock:
        if _registered:
            return
        found = {RAW.extra: importlib.util.find_spec(RAW.module) is not None}  # used directly
        for fmt in (HEIF, AVIF, JXL):
            if fmt is AVIF and features.check("avif"):  # a Pillow built with libavif
                found[fmt.extra] = True
                continue
            try:
                module = importlib.import_module(fmt.module)
            except ImportError:
                found[fmt.extra] = False
                continue
            if fmt is HEIF:  # its thumbnails serve draft(): a large photo decoded small
                module.register_heif_opener(thumbnails=True)
            found[fmt.extra] = True
        _registered.update(found)


def registered() -> bool:
    """Whether ``register`` has run in this process."""
    return bool(_registered)


def available(fmt: Optional) -> bool:
    """Whether the decoder of ``fmt`` is installed."""
    register()
    return _registered[fmt.extra]


@lru_cache(maxsize=1)
def extensions() -> frozenset[str]:
    """Every extension the walker takes for an image: those of the formats Pillow opens, and
    those of the optional formats whether their decoders are installed or not."""
    Image.init()
    opened = {ext for ext, name in Image.registered_extensions().items()
              if name in Image.OPEN and name not in NOT_PICTURES
              and not _is_stub(Image.OPEN[name][0])}
    return frozenset(opened).union(*(fmt.extensions for fmt in OPTIONAL))


def _is_stub(factory) -> bool:
    return isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)


def sniff(head: bytes) -> Optional | None | bool:
    """What the first 16 bytes of a file say: an optional format, True for a format Pillow
    reads itself, None for nothing known."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _AVIF_BRANDS:
            return AVIF
        if brand in _HEIF_BRANDS:
            return HEIF
        return RAW if brand == b"crx " else None
    if head.startswith(_RAW_SIGNATURES) or (head.startswith(b"II*\x00") and head[8:10] == b"CR"):
        return RAW  # ORF, RW2, RAF; a CR2 is a TIFF with "CR" at byte 8
    if head.startswith(_JXL_SIGNATURES):
        return JXL
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    return True if head.startswith(_SIGNATURES) else None


def head_of(source: str | os.PathLike | BinaryIO) -> bytes:
    """The first 16 bytes of a file or an open binary file (b"" when unreadable)."""
    try:
        if hasattr(source, "read"):
            where = source.tell()
            head = source.read(16)
            source.seek(where)
            return head
        with open(source, "rb") as f:
            return f.read(16)
    except (OSError, ValueError):
        return b""


def is_raw(source: str | os.PathLike | BinaryIO) -> bool:
    """A camera RAW file, by its extension or (for the formats not built on TIFF) its
    signature. A DNG or NEF without its extension is read by Pillow as the TIFF it also is."""
    name = getattr(source, "name", source)
    if isinstance(name, (str, os.PathLike)):
        ext = os.path.splitext(os.fsdecode(name))[1].lower()
        if ext in RAW_EXTENSIONS:
            return True
        if ext in _NOT_RAW:  # a JPEG named .jpg: no need to read its first bytes
            return False
    return sniff(head_of(source)) is RAW


# LibRaw's ``sizes.flip`` -> the turn that makes its picture upright (EXIF orientations 3, 8, 6).
_FLIP = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90,
         6: Image.Transpose.ROTATE_270}


def open_raw(source: str | os.PathLike | BinaryIO, half_size: bool = True) -> Image.Image:
    """A camera RAW file as a PIL image, upright: its embedded preview where it has one (the
    camera's own rendering, as fast as a JPEG), else demosaiced (``half_size``: 2x2 blocks as
    one pixel, several times faster and plenty for what the tool does with it).

    A preview with an EXIF orientation of its own is returned as it is (the caller applies
    it); one without is turned as the RAW says, unless it is turned already (as some cameras
    store it). Raises ImportError when rawpy is absent; rawpy's errors for unreadable files.
    """
    import rawpy

    if not isinstance(source, (str, os.PathLike)):
        source = io.BytesIO(source.read())
    elif isinstance(source, os.PathLike):
        source = os.fspath(source)
    with rawpy.imread(source) as raw:
        flip, sensor = raw.sizes.flip, (raw.sizes.width, raw.sizes.height)
        try:
            thumb = raw.extract_thumb()
        except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
            thumb = None
        if thumb is None:  # LibRaw turns what it demosaics
            return Image.fromarray(raw.postprocess(half_size=half_size, use_camera_wb=True))
    if thumb.format == rawpy.ThumbFormat.JPEG:
        img = Image.open(io.BytesIO(thumb.data))
        if img.getexif().get(0x0112):
            return img
    else:
        img = Image.fromarray(thumb.data)
    turn = _FLIP.get(flip)
    if turn is None or (flip != 3 and (img.width > img.height) != (sensor[0] > sensor[1])):
        return img
    img.load()
    return img.transpose(turn)


def raw_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of a RAW file as LibRaw renders it (before its orientation)."""
    import rawpy

    with rawpy.imread(os.fspath(path)) as raw:
        return raw.sizes.width, raw.sizes.height
