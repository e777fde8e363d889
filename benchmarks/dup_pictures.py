"""The pictures and copies of benchmarks/duplicates.py: Debian's packaged pictures and pictures
drawn here of the kinds a copy detector finds hard, and the copies a collection gathers.

Three sets: photos (Debian's wallpapers, each different picture once), similar scenes (frames
of ViSP's video sequences, each 10 grey levels apart on average from the others kept of its
sequence: different pictures that look alike, as burst shots do), and kinds (below).

Kinds: Debian's paper and canvas tiles filling a page (each texture once: mypaint ships some in
several tones), wallpapers and flat backgrounds, and kinds drawn here (each picture from its
own seed; pictures of one kind are alike on purpose, so that a different picture of the same
kind is the near miss a check must keep apart):

- flat: one colour and a camera's faint noise; near-flat: a faint smooth shading on a colour;
- faint texture: paper-like grain (noise at every scale, 2 to 6 grey levels) on a colour shared
  by several pictures, so that only the grain tells them apart;
- gradient: linear and radial, two colours, every direction;
- dark: a blurred night scene (smooth blobs, 10 to 60 grey levels);
- page: a scanned page of text (off-white paper, lines of words, the same layout);
- screenshot: a window with a title bar, a side bar and lines of text (the same layout).
"""

from __future__ import annotations

import glob
import hashlib
import io
import itertools
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

PHOTOS = ("/usr/share/wallpapers/*/contents/images", "/usr/share/backgrounds/mate/nature",
          "/usr/share/backgrounds")
PHOTO_PACKAGES = "plasma-workspace-wallpapers mate-backgrounds ukui-wallpapers lomiri-wallpapers"
SCENES = "/usr/share/visp-images-data/ViSP-images"
SEQUENCES = ("mbt/cube", "cube", "mbt-depth/castel/castel", "mbt-depth/Castle-simu/Images",
             "mire-2")
CHANGED = 10.0  # grey levels on average: two frames this different are different pictures
# Debian packages of the third set: paper, canvas and flat backgrounds (mypaint-data, tiles
# drawn as the page they fill), wallpapers in light and dark variants (gnome-backgrounds),
# flat wallpapers (sway-backgrounds), boot and login backgrounds (desktop-base).
KIND_PACKAGES = "mypaint-data mypaint-data-extras gnome-backgrounds sway-backgrounds desktop-base"
TILES = "/usr/share/mypaint/backgrounds"
PACKAGED = ("/usr/share/backgrounds/gnome/*.webp", "/usr/share/backgrounds/sway/*.png",
            "/usr/share/desktop-base/*-theme/grub/grub-16x9.png",
            "/usr/share/desktop-base/*-theme/login/*.jpg")
PAGE = (1600, 1200)  # pixels of a drawn picture (a tile is repeated to fill one)
DRAWN = 8  # pictures of each drawn kind
# mypaint ships one texture in several tones and several places (paper1_1 to paper1_4, paper3_1
# and squares2 8 pixels on): a tile whose pattern correlates this much with one taken before, at
# some shift (a tile's origin is arbitrary), is a copy of it by its pixels, not another picture.
SAME_PATTERN = 0.8
# A copy that clipping left this blank (the share of its pixels black or white) shows nothing of
# its picture: every light paper 25% brighter is the same white file. It is not made.
BLANK = 0.95


# -- copies ---------------------------------------------------------------------------------
def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue()))


def _scaled(img: Image.Image, f: float) -> Image.Image:
    return img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))),
                      Image.Resampling.LANCZOS)


def _crop(img: Image.Image, left: float, top: float, right: float, bottom: float):
    w, h = img.size
    return img.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))


def _srgb_as_adobe(img: Image.Image) -> Image.Image:
    """The pixels converted from sRGB to Adobe RGB (1998) and read without the profile, as a
    viewer that ignores embedded profiles shows such a copy (duller colours)."""
    x = np.asarray(img, dtype=np.float64) / 255
    lin = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    srgb_to_xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                            [0.0193, 0.1192, 0.9505]])
    xyz_to_adobe = np.linalg.inv(np.array([[0.5767, 0.1856, 0.1882], [0.2974, 0.6273, 0.0753],
                                           [0.0270, 0.0707, 0.9911]]))
    adobe = np.clip(lin @ (xyz_to_adobe @ srgb_to_xyz).T, 0, 1) ** (1 / 2.19921875)
    return Image.fromarray(np.round(adobe * 255).astype(np.uint8))


def _rotated(img: Image.Image, degrees: float) -> Image.Image:
    """Turned by ``degrees`` and cropped to the largest upright box without the corners."""
    w, h = img.size
    turned = img.rotate(degrees, Image.Resampling.BICUBIC)
    t = abs(np.tan(np.radians(degrees)))
    mx, my = round(h * t / 2) + 1, round(w * t / 2) + 1
    return turned.crop((mx, my, w - mx, h - my))


# name -> (make the copy, format, save options): the five copies of the earlier sets, then the
# issue's two ("60% at JPEG quality 50", "5% off every side, 10% brighter, as PNG").
COPIES: dict[str, tuple[Callable, str, dict]] = {
    "resized": (lambda im: _scaled(im, 0.4), "JPEG", {"quality": 85}),
    "recompressed": (lambda im: im, "JPEG", {"quality": 50}),
    "cropped": (lambda im: _crop(im, .03, .05, 0, 0), "JPEG", {"quality": 90}),
    "brightened": (lambda im: ImageEnhance.Brightness(im).enhance(1.25), "JPEG", {"quality": 90}),
    "png": (lambda im: im, "PNG", {}),
    "60% q50": (lambda im: _scaled(im, 0.6), "JPEG", {"quality": 50}),
    "cropped 4 sides, brighter": (
        lambda im: ImageEnhance.Brightness(_crop(im, .05, .05, .05, .05)).enhance(1.1), "PNG", {}),
}
# Everyday copies none of the above makes (--everyday): the check was not tuned on them.
EVERYDAY: dict[str, tuple[Callable, str, dict]] = {
    "gamma 0.8": (lambda im: im.point(lambda v: round(255 * (v / 255) ** 0.8)), "JPEG",
                  {"quality": 90}),
    "contrast 1.2": (lambda im: ImageEnhance.Contrast(im).enhance(1.2), "JPEG", {"quality": 90}),
    "rotated 1.5": (lambda im: _rotated(im, 1.5), "JPEG", {"quality": 90}),
    "sharpened": (lambda im: im.filter(ImageFilter.UnsharpMask(2, 80, 2)), "JPEG",
                  {"quality": 90}),
    "blurred": (lambda im: im.filter(ImageFilter.GaussianBlur(1.5)), "JPEG", {"quality": 90}),
    "screenshot": (lambda im: _scaled(_scaled(im, 0.8), 1.25), "PNG", {}),  # shown, grabbed
    "colour profile": (_srgb_as_adobe, "JPEG", {"quality": 90}),
    "webp": (lambda im: im, "WEBP", {"quality": 75}),
}


def _letterboxed(img: Image.Image) -> Image.Image:
    """``img`` in the middle of a black square (a feed's square post)."""
    side = max(img.size)
    out = Image.new("RGB", (side, side))
    out.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return out


def _watermarked(img: Image.Image) -> Image.Image:
    """A photographer's name in the lower right corner, white on a dark band."""
    out = img.copy()
    draw = ImageDraw.Draw(out, "RGBA")
    w, h = out.size
    draw.rectangle((int(w * .62), int(h * .88), int(w * .98), int(h * .97)), fill=(0, 0, 0, 90))
    draw.text((int(w * .64), int(h * .9)), "(c) 2026 some photographer",
              fill=(255, 255, 255, 200), font_size=max(10, h // 30))
    return out


def _noisy(img: Image.Image) -> Image.Image:
    """A sensor's noise on top (6 levels, a phone's photo of a screen or print)."""
    noise = np.random.default_rng(0).normal(0, 6, (img.height, img.width, 3))
    return _from(np.asarray(img, dtype=np.float32) + noise)


# Still other everyday copies (--others, instead of the seven: made after check 13, two of them
# for it, the grey and the bars; the rest as they came): what the check does with each.
OTHERS: dict[str, tuple[Callable, str, dict]] = {
    "greyscale": (lambda im: im.convert("L").convert("RGB"), "JPEG", {"quality": 90}),
    "letterboxed": (_letterboxed, "JPEG", {"quality": 90}),
    "bordered": (lambda im: ImageOps.expand(im, border=max(im.size) // 16, fill="white"), "JPEG",
                 {"quality": 90}),
    "watermarked": (_watermarked, "JPEG", {"quality": 90}),
    "mirrored": (ImageOps.mirror, "JPEG", {"quality": 90}),
    "rotated 90": (lambda im: im.transpose(Image.Transpose.ROTATE_90), "JPEG", {"quality": 90}),
    "stretched": (lambda im: im.resize((im.width, int(im.height * 0.85))), "JPEG",
                  {"quality": 90}),
    "thumbnail 256": (lambda im: im.resize((256, round(256 * im.height / im.width))), "JPEG",
                      {"quality": 85}),
    "q20": (lambda im: im, "JPEG", {"quality": 20}),
    "saturated": (lambda im: ImageEnhance.Color(im).enhance(1.4), "JPEG", {"quality": 90}),
    "noisy": (_noisy, "JPEG", {"quality": 90}),
}


def _square(img: Image.Image) -> Image.Image:
    """The middle square (a feed's square crop of a landscape photo)."""
    side = min(img.size)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    return img.crop((left, top, left + side, top + side))


def _widescreen(img: Image.Image) -> Image.Image:
    """The middle 16:9 band (a photo cropped for a screen), where the picture is taller."""
    h = round(img.width * 9 / 16)
    top = (img.height - h) // 2
    return img if h >= img.height else img.crop((0, top, img.width, top + h))


def _warm(img: Image.Image) -> Image.Image:
    """A warm filter: red up, blue down (white balance)."""
    return _from(np.asarray(img, dtype=np.float32) * [1.06, 1.0, 0.88] + [6, 2, 0])


def _vignette(img: Image.Image) -> Image.Image:
    """Corners darkened to 0.55 (1 - 0.45 r^2, r 1 at the corners)."""
    w, h = img.size
    y, x = np.mgrid[0:h, 0:w]
    r2 = ((x - w / 2) ** 2 / (w / 2) ** 2 + (y - h / 2) ** 2 / (h / 2) ** 2) / 2
    return _from(np.asarray(img, dtype=np.float32) * (1 - 0.45 * r2)[..., None])


def _captioned(img: Image.Image) -> Image.Image:
    """A meme's caption: white words with a black outline at the top and at the foot."""
    out = img.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    for text, y, anchor in (("WHEN THE MONDAY", h // 12, "mt"),
                            ("HITS DIFFERENT", h - h // 12, "mb")):
        draw.text((w // 2, y), text, fill="white", stroke_width=max(2, h // 150),
                  stroke_fill="black", font_size=h // 9, anchor=anchor)
    return out


# Fresh copies (--fresh, instead of the seven): thirteen more everyday ways, made on 2026-12-07
# and measured before the check was changed for any of them (benchmarks/RESULTS.md).
FRESH: dict[str, tuple[Callable, str, dict]] = {
    "square crop": (_square, "JPEG", {"quality": 90}),
    "16x9 crop": (_widescreen, "JPEG", {"quality": 90}),
    "crop 12 8": (lambda im: _crop(im, .12, .08, 0, 0), "JPEG", {"quality": 90}),
    "warm": (_warm, "JPEG", {"quality": 90}),
    "sepia": (lambda im: ImageOps.colorize(im.convert("L"), (30, 18, 6), (255, 242, 205)),
              "JPEG", {"quality": 90}),
    "vignette": (_vignette, "JPEG", {"quality": 90}),
    "caption": (_captioned, "JPEG", {"quality": 90}),
    "tiny 160": (lambda im: im.resize((160, round(160 * im.height / im.width))), "JPEG",
                 {"quality": 75}),
    "rotated 180": (lambda im: im.transpose(Image.Transpose.ROTATE_180), "JPEG", {"quality": 90}),
    "q10": (lambda im: im, "JPEG", {"quality": 10}),
    "upscaled 2x": (lambda im: im.resize((im.width * 2, im.height * 2), Image.Resampling.BICUBIC),
                    "JPEG", {"quality": 90}),
    "flip brighter": (lambda im: ImageEnhance.Brightness(ImageOps.mirror(im)).enhance(1.15),
                      "JPEG", {"quality": 85}),
    "webp q30": (lambda im: im, "WEBP", {"quality": 30}),
}


def _filtered(img: Image.Image) -> Image.Image:
    """An app's filter: more saturated, more contrast, warmer, corners a little darker."""
    img = ImageEnhance.Contrast(ImageEnhance.Color(img).enhance(1.25)).enhance(1.15)
    w, h = img.size
    y, x = np.mgrid[0:h, 0:w]
    r2 = ((x - w / 2) ** 2 / (w / 2) ** 2 + (y - h / 2) ** 2 / (h / 2) ** 2) / 2
    return _from(np.asarray(img, dtype=np.float32) * [1.04, 1.0, 0.92]
                 * (1 - 0.25 * r2)[..., None])


def _story(img: Image.Image) -> Image.Image:
    """A 9:16 story: the photo across its width on a blurred, darkened fill of itself."""
    w = img.width
    h = round(w * 16 / 9)
    out = ImageEnhance.Brightness(ImageOps.fit(img, (w, h)).filter(
        ImageFilter.GaussianBlur(w / 40))).enhance(0.7)
    out.paste(img, (0, (h - img.height) // 2))
    return out


def _phone_screenshot(img: Image.Image) -> Image.Image:
    """A phone's screenshot of the photo on show: 1080x2340, dark, a status bar, buttons."""
    w, h = 1080, 2340
    shown = img.resize((w, round(w * img.height / img.width)))
    out = Image.new("RGB", (w, h), (18, 18, 18))
    out.paste(shown, (0, (h - shown.height) // 2 - 60))
    draw = ImageDraw.Draw(out)
    draw.text((40, 30), "9:41", fill="white", font_size=42)
    draw.text((w - 200, 30), "5G 87%", fill="white", font_size=42)
    for n, word in enumerate(("Share", "Edit", "Like", "Delete")):
        draw.text((80 + n * 260, h - 150), word, fill=(220, 220, 220), font_size=40)
    return out


def _print_frame(img: Image.Image) -> Image.Image:
    """A print's frame: a 4% margin of off-white, five times as deep at the foot."""
    b = max(img.size) // 25
    return ImageOps.expand(img, (b, b, b, 5 * b), fill=(250, 248, 240))


def _portrait(img: Image.Image) -> Image.Image:
    """The middle 4:5 portrait of a landscape photo (a feed's portrait post)."""
    if img.width <= img.height:
        return img
    w = round(img.height * 4 / 5)
    left = (img.width - w) // 2
    return img.crop((left, 0, left + w, img.height))


def _shared(img: Image.Image) -> Image.Image:
    """A messenger's copy: 4% off one side and 2% off the foot, 1280 pixels on the longer."""
    img = _crop(img, .04, 0, 0, .02)
    f = 1280 / max(img.size)
    return img.resize((round(img.width * f), round(img.height * f)),
                      Image.Resampling.LANCZOS) if f < 1 else img


# Copies as apps and edits give them back (--shared, instead of the seven): twelve more, made on
# 2026-12-07 and measured before the check or the groups were changed for any of them.
SHARED: dict[str, tuple[Callable, str, dict]] = {
    "filtered": (_filtered, "JPEG", {"quality": 88}),
    "enhanced": (lambda im: ImageOps.autocontrast(im, cutoff=1).filter(
        ImageFilter.UnsharpMask(radius=25, percent=50, threshold=0)), "JPEG", {"quality": 90}),
    "straightened 3": (lambda im: _rotated(im, 3.0), "JPEG", {"quality": 90}),
    "darker": (lambda im: ImageEnhance.Brightness(im).enhance(0.75), "JPEG", {"quality": 90}),
    "bw contrast": (lambda im: ImageEnhance.Contrast(im.convert("L")).enhance(1.3).convert("RGB"),
                    "JPEG", {"quality": 90}),
    "story": (_story, "JPEG", {"quality": 85}),
    "phone screenshot": (_phone_screenshot, "PNG", {}),
    "polaroid": (_print_frame, "JPEG", {"quality": 90}),
    "portrait 4x5": (_portrait, "JPEG", {"quality": 90}),
    "zoomed 80": (lambda im: _crop(im, .1, .1, .1, .1).resize(im.size, Image.Resampling.BICUBIC),
                  "JPEG", {"quality": 90}),
    "shared q60": (_shared, "JPEG", {"quality": 60}),
    "blurred 3": (lambda im: im.filter(ImageFilter.GaussianBlur(3)), "JPEG", {"quality": 90}),
}


# The issue's own protocol (--once): each picture with one copy, the first of these for every
# other picture and the second for the rest.
ONCE = ("60% q50", "cropped 4 sides, brighter")


def write_copies(sources: list[tuple[str, Image.Image | Path]], out: Path,
                 kinds: dict = COPIES, once: bool = False) -> dict[str, set[str]]:
    """Each original (as JPEG quality 95) and its copies as files in ``out``: {group name: its
    file names}; a group is named after its picture's kind ("photo-003", "flat-001"). With
    ``once``, picture n gets only the copy ``list(kinds)[n % len(kinds)]``."""
    out.mkdir(parents=True, exist_ok=True)
    groups = {}
    for n, (kind, src) in enumerate(sources):
        name = f"{kind.replace(' ', '_')}-{n:03d}"
        mine = [list(kinds)[n % len(kinds)]] if once else list(kinds)
        made = {f"{name}-original.jpg": (lambda im: im, "JPEG", {"quality": 95}), **{
            f"{name}-{c.replace(' ', '_').replace('%', '')}.{fmt.lower().replace('jpeg', 'jpg')}":
            (make, fmt, opts) for c, (make, fmt, opts) in kinds.items() if c in mine}}
        missing = [f for f in made if not (out / f).exists()]  # a blank copy is never there
        if missing:  # files already there are not written again: an index of them stays
            img = src if isinstance(src, Image.Image) else Image.open(src).convert("RGB")
            img.thumbnail((2048, 2048))  # the originals as a camera might give them
            blank = _blank(img)
            for file in missing:
                make, fmt, opts = made[file]
                copy = make(img).convert("RGB")
                if blank or not _blank(copy):
                    copy.save(out / file, fmt, **opts)
        groups[name] = {f for f in made if (out / f).exists()}
    return groups


def _blank(img: Image.Image) -> bool:
    """Whether BLANK of the pixels of an RGB image are black or white."""
    a = np.asarray(img)
    return bool(((a <= 0) | (a >= 255)).all(axis=2).mean() >= BLANK)


def kind_of(file: str) -> str:
    """"faint_texture-012-png.png" -> "faint texture"."""
    return file.split("-", 1)[0].replace("_", " ")


def copy_of(file: str) -> str:
    """"flat-001-60_q50.jpg" -> "60_q50"."""
    return file.rsplit(".", 1)[0].split("-", 2)[2]


# -- Debian's pictures ----------------------------------------------------------------------
def originals(patterns=PHOTOS) -> list[Path]:
    """The largest file of each wallpaper folder (the others are its resized copies), and
    each other picture once (one package ships another's under a second name). Folders that
    are links (desktop-base's themes) belong to the kinds set."""
    out, seen = [], set()
    for pattern in patterns:
        for folder in sorted(glob.glob(pattern)):
            if any(os.path.islink(p) for p in Path(folder).parents) or os.path.islink(folder):
                continue
            files = [Path(p) for p in glob.glob(folder + "/*") if p.lower().endswith(
                (".jpg", ".jpeg", ".png"))]
            if "wallpapers" in folder:
                files = [max(files, key=lambda p: Image.open(p).size[0])] if files else []
            for path in sorted(files):
                with Image.open(path) as img:
                    pixels = hashlib.sha256(img.convert("RGB").tobytes()).hexdigest()
                if pixels not in seen:
                    seen.add(pixels)
                    out.append(path)
    return out


def scene_frames(root: str = SCENES, sequences=SEQUENCES, per_sequence: int = 8, step: int = 4,
                 changed: float = CHANGED) -> list[Path]:
    """Frames of ViSP's video sequences (a camera, a scene, things moving), up to
    ``per_sequence`` of each, every ``step``-th frame considered: a frame is kept when its
    pixels differ from those of every frame kept of its sequence by ``changed`` grey levels
    on average: different pictures of one scene."""
    out = []
    for sequence in sequences:
        files = sorted(p for p in Path(root, sequence).glob("*")
                       if p.suffix.lower() in (".pgm", ".ppm", ".png", ".jpg"))
        kept: list[np.ndarray] = []
        for path in files[::step]:
            frame = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
            if all(np.abs(frame - k).mean() >= changed for k in kept):
                kept.append(frame)
                out.append(path)
            if len(kept) == per_sequence:
                break
    return out


def packaged() -> list[tuple[str, Image.Image | Path]]:
    """mypaint's tiles filling a page ("faint texture", "flat"), each pattern once
    (SAME_PATTERN), and the packaged wallpapers and backgrounds ("wallpaper"), each different
    picture once."""
    out, seen, patterns = [], set(), []
    for path in sorted(Path(TILES).glob("**/*.png")):
        tile = Image.open(path).convert("RGB")
        if max(tile.size) > 1100 or min(tile.size) < 32:  # a storyboard, a score: not a tile
            continue
        pattern = _pattern(tile)
        if pattern is not None and any(_shifted_correlation(pattern, p) >= SAME_PATTERN
                                       for p in patterns if p.shape == pattern.shape):
            continue
        patterns += [] if pattern is None else [pattern]
        page = Image.new("RGB", PAGE)
        for x, y in itertools.product(range(0, PAGE[0], tile.width), range(0, PAGE[1],
                                                                           tile.height)):
            page.paste(tile, (x, y))
        spread = np.asarray(tile.convert("L"), dtype=np.float32).std()
        out.append(("flat" if spread < 1 else "faint texture", page))
    for pattern in PACKAGED:
        for path in sorted(glob.glob(pattern)):
            with Image.open(path) as img:
                key = (img.size, img.convert("RGB").resize((16, 16)).tobytes())
            if "_Portrait" in path or "x1536" not in path and "sway" in path or key in seen:
                continue  # sway's one picture at its largest size, landscape
            seen.add(key)
            out.append(("wallpaper", Path(path)))
    return out


def _pattern(tile: Image.Image) -> np.ndarray | None:
    """A tile's grey levels, mean 0 and standard deviation 1 (None when flat)."""
    grey = np.asarray(tile.convert("L"), dtype=np.float64)
    return None if grey.std() < 1 else (grey - grey.mean()) / grey.std()


def _shifted_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """The best correlation of two patterns of one size, ``b`` shifted (wrapping round)."""
    return float(np.fft.irfft2(np.fft.rfft2(a) * np.conj(np.fft.rfft2(b)), a.shape).max()
                 / a.size)


# -- drawn pictures -------------------------------------------------------------------------
def _field(rng: np.random.Generator, size=PAGE, scales=(4, 16, 64, 256), falloff=1.0):
    """Noise at every scale in ``scales`` (pixels), amplitude ~ scale ** falloff, unit std."""
    w, h = size
    out = np.zeros((h, w), np.float32)
    for s in scales:
        small = rng.standard_normal((max(2, h // s), max(2, w // s))).astype(np.float32)
        out += np.asarray(Image.fromarray(small, "F").resize((w, h), Image.Resampling.BICUBIC)
                          ) * s ** falloff
    return out / max(float(out.std()), 1e-6)


def _from(array: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(np.round(array), 0, 255).astype(np.uint8))


def flat(rng: np.random.Generator, n: int) -> Image.Image:
    colour = rng.integers(20, 236, 3)
    noise = rng.normal(0, 1.0, (PAGE[1], PAGE[0], 3))
    shade = 0.0 if n % 2 == 0 else 4 * _field(rng, scales=(256, 512))[..., None]  # near-flat
    return _from(colour + noise + shade)


def faint_texture(rng: np.random.Generator, n: int) -> Image.Image:
    colour = np.random.default_rng(n // 4).integers(120, 236, 3)  # four pictures to a colour
    grain = rng.uniform(2, 6) * _field(rng, scales=(2, 4, 8, 32, 128), falloff=0.5)
    return _from(colour + grain[..., None] + rng.normal(0, 0.7, (PAGE[1], PAGE[0], 3)))


def gradient(rng: np.random.Generator, n: int) -> Image.Image:
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    w, h = PAGE
    y, x = np.mgrid[0:h, 0:w] / max(w, h)
    if n % 2:
        t = np.hypot(x - rng.uniform(0.2, 1.1), y - rng.uniform(0.2, 0.6)) / 1.2
    else:
        angle = rng.uniform(0, 2 * np.pi)
        t = x * np.cos(angle) + y * np.sin(angle)
    t = ((t - t.min()) / max(float(t.max() - t.min()), 1e-6))[..., None]
    return _from(a * (1 - t) + b * t + rng.normal(0, 0.8, (h, w, 3)))


def dark(rng: np.random.Generator, n: int) -> Image.Image:
    scene = np.stack([_field(rng, scales=(64, 128, 256)) for _ in range(3)], axis=-1)
    light = rng.uniform(18, 40) + rng.uniform(6, 14) * scene
    return _from(light).filter(ImageFilter.GaussianBlur(6))


WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her she there been one all we their has would when "
         "invoice total account report page section figure table summary results method data"
         ).split()


def _lines(draw: ImageDraw.ImageDraw, rng: np.random.Generator, box, size: int, ink):
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = box
    y = top
    while y + size < bottom:
        x = left
        while True:
            word = str(rng.choice(WORDS))
            width = draw.textlength(word + " ", font=font)
            if x + width > right:
                break
            draw.text((x, y), word, fill=ink, font=font)
            x += width
        y += int(size * 1.6) * (2 if rng.random() < 0.12 else 1)  # now and then a paragraph


def page(rng: np.random.Generator, n: int) -> Image.Image:
    w, h = 1240, 1754  # A4 at 150 dpi
    paper = 244 + rng.normal(0, 1.5, (h, w, 1)) + np.array([0, -1, -4])
    img = _from(paper)
    _lines(ImageDraw.Draw(img), rng, (120, 140, w - 120, h - 160), 22, (30, 30, 34))
    return img.filter(ImageFilter.GaussianBlur(0.6))


def screenshot(rng: np.random.Generator, n: int) -> Image.Image:
    w, h = 1440, 900
    img = Image.new("RGB", (w, h), (246, 246, 248))
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, w, 36), fill=(58, 60, 66))  # title bar
    for i, c in enumerate(((236, 95, 90), (245, 190, 80), (98, 197, 84))):
        d.ellipse((14 + 22 * i, 11, 28 + 22 * i, 25), fill=c)
    d.rectangle((0, 36, 260, h), fill=(232, 233, 237))  # side bar
    _lines(d, rng, (24, 60, 240, h - 20), 15, (60, 60, 70))
    d.rectangle((300, 70, w - 40, 120), fill=(255, 255, 255), outline=(200, 200, 210))
    _lines(d, rng, (300, 150, w - 40, h - 30), 16, (25, 25, 30))
    return img


DRAWERS = {"flat": flat, "faint texture": faint_texture, "gradient": gradient, "dark": dark,
           "page": page, "screenshot": screenshot}


def drawn(per_kind: int = DRAWN) -> list[tuple[str, Image.Image]]:
    """``per_kind`` pictures of each drawn kind, each from its own seed."""
    return [(kind, draw(np.random.default_rng(1000 * k + n), n))
            for k, (kind, draw) in enumerate(DRAWERS.items()) for n in range(per_kind)]
