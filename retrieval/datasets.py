"""Ready labelled data sets: Fashion-MNIST (torchvision, or Debian's offline copy) and a
procedurally drawn set of shapes that needs nothing at all; both can be written out as an
ImageFolder tree of image files (one sub-folder per class)."""

from __future__ import annotations

import gzip
import math
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .errors import DataError

# Where Debian's dataset-fashion-mnist package puts the four IDX files (.gz).
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SHAPE_CLASSES = ("circle", "square", "triangle", "diamond", "star", "cross", "ring",
                 "h-stripes", "v-stripes", "checker")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "retrieve"


def _raw_files_in(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder``, unpacked or .gz, or None if any is missing."""
    found = {}
    for name in FASHION_FILES:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            return None
    return found


def fashion_mnist_root(data_root: str | os.PathLike | None = None) -> Path:
    """A folder that torchvision's FashionMNIST reads offline (it holds FashionMNIST/raw/).

    Looks in ``data_root`` (torchvision's layout, or the bare IDX files as Debian ships them)
    and then in Debian's /usr/share/datasets/fashion-mnist; bare files are unpacked into
    the user cache. Returns the cache folder, to be downloaded into, when nothing is found.
    """
    candidates = [Path(data_root)] if data_root else []
    candidates.append(DEBIAN_FASHION_MNIST)
    for folder in candidates:
        if _raw_files_in(folder / "FashionMNIST" / "raw") and all(
                (folder / "FashionMNIST" / "raw" / n).is_file() for n in FASHION_FILES):
            return folder
        files = _raw_files_in(folder)
        if files:
            return _unpack(files)
    return cache_dir() / "datasets"


def _unpack(files: dict[str, Path]) -> Path:
    root = cache_dir() / "datasets"
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, src in files.items():
        dst = raw / name
        if dst.is_file():
            continue
        tmp = dst.with_suffix(".tmp")
        opener = gzip.open if src.suffix == ".gz" else open
        with opener(src, "rb") as fin, open(tmp, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        os.replace(tmp, dst)
    return root


def fashion_mnist(data_root: str | os.PathLike | None = None, train: bool = True):
    """torchvision's FashionMNIST split, from local files or (where a network exists) downloaded."""
    from torchvision.datasets import FashionMNIST

    root = fashion_mnist_root(data_root)
    try:
        return FashionMNIST(str(root), train=train, download=True)
    except Exception as e:  # offline: URLError and friends
        raise DataError(
            f"fashion-mnist: not found under {data_root or DEBIAN_FASHION_MNIST} and could not be "
            f"downloaded ({type(e).__name__}); install Debian's dataset-fashion-mnist or pass "
            "--data-root DIR holding the four IDX files") from None


def class_folder_name(name: str) -> str:
    """A class name made safe as a folder name ("T-shirt/top" -> "T-shirt-top")."""
    return name.replace("/", "-").replace(os.sep, "-").strip() or "unnamed"


def export_fashion_mnist(out: str | os.PathLike, per_class: int, train: bool = True,
                         data_root: str | os.PathLike | None = None, offset: int = 0) -> list[Path]:
    """Write ``per_class`` images of each class as PNG files under out/<class>/ and list them.

    ``offset`` skips that many images of each class first (to take disjoint subsets).
    """
    ds = fashion_mnist(data_root, train=train)
    labels = ds.targets.numpy()
    out, written = Path(out), []
    for c, name in enumerate(ds.classes):
        folder = out / class_folder_name(name)
        folder.mkdir(parents=True, exist_ok=True)
        for i in np.flatnonzero(labels == c)[offset:offset + per_class]:
            path = folder / f"{'train' if train else 'test'}-{i:05d}.png"
            Image.fromarray(ds.data[i].numpy(), mode="L").save(path)
            written.append(path)
    return written


def draw_shape(label: int, size: int, rng: np.random.Generator) -> Image.Image:
    """One procedurally drawn picture of class ``label`` (see SHAPE_CLASSES): random colours,
    position, scale and rotation on a noisy background, so that pixels alone do not tell."""
    hi = 4 * size  # draw at 4x and shrink: anti-aliased edges
    bg = tuple(int(v) for v in rng.integers(0, 256, 3))
    fg = tuple(int((b + rng.integers(90, 166)) % 256) for b in bg)
    img = Image.new("RGB", (hi, hi), bg)
    d = ImageDraw.Draw(img)
    r = hi * rng.uniform(0.22, 0.38)
    cx, cy = hi / 2 + rng.uniform(-0.12, 0.12, 2) * hi
    angle = rng.uniform(0, 2 * math.pi)

    def polygon(n: int, radii=(1.0,)) -> list[tuple[float, float]]:
        return [(cx + r * radii[i % len(radii)] * math.cos(angle + 2 * math.pi * i / n),
                 cy + r * radii[i % len(radii)] * math.sin(angle + 2 * math.pi * i / n))
                for i in range(n)]

    name = SHAPE_CLASSES[label]
    if name == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif name == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fg, width=int(r / 3))
    elif name in ("square", "triangle", "diamond"):
        n = {"square": 4, "triangle": 3, "diamond": 4}[name]
        pts = polygon(n, (1.0, 0.55) if name == "diamond" else (1.0,))
        d.polygon(pts, fill=fg)
    elif name == "star":
        d.polygon(polygon(10, (1.0, 0.45)), fill=fg)
    elif name == "cross":
        w = r / 3
        for a in (angle, angle + math.pi / 2):
            dx, dy = r * math.cos(a), r * math.sin(a)
            d.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=fg, width=int(w))
    else:  # stripes and checker fill the picture: period and phase vary
        period = int(hi * rng.uniform(0.08, 0.16))
        phase = int(rng.integers(0, period))
        for k in range(-1, hi // period + 1):
            a = k * period + phase
            if name == "h-stripes":
                d.rectangle([0, a, hi, a + period // 2], fill=fg)
            elif name == "v-stripes":
                d.rectangle([a, 0, a + period // 2, hi], fill=fg)
            else:
                for m in range(-1, hi // period + 1):
                    if (k + m) % 2 == 0:
                        b = m * period + phase
                        d.rectangle([a, b, a + period - 1, b + period - 1], fill=fg)
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    noise = rng.normal(0, 12, (size, size, 3))
    arr = np.clip(np.asarray(img, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(arr).filter(ImageFilter.SMOOTH) if rng.random() < 0.3 else Image.fromarray(arr)


def make_shapes(out: str | os.PathLike, per_class: int, size: int = 64, seed: int = 0,
                classes: int = len(SHAPE_CLASSES), prefix: str = "") -> list[Path]:
    """Write ``per_class`` drawn images of each of the first ``classes`` shapes as PNG files
    under out/<class>/ (the ImageFolder layout) and list them. Deterministic for a seed."""
    if not 2 <= classes <= len(SHAPE_CLASSES):
        raise ValueError(f"classes must be between 2 and {len(SHAPE_CLASSES)}")
    rng = np.random.default_rng(seed)
    out, written = Path(out), []
    for label in range(classes):
        folder = out / SHAPE_CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            path = folder / f"{prefix}{i:04d}.png"
            draw_shape(label, size, rng).save(path)
            written.append(path)
    return written
