"""Labelled image sets for training: class folders (tolerating corrupt files), Fashion-MNIST,
a seeded train/validation split, and the pixel statistics of section 4.1 (mean, std, PCA)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .errors import DataError, NotAnImage
from .images import load_image
from .walk import find_images
# Enough pixels for stable channel statistics and a 3x3 covariance, cheap to decode.
STATS_MAX_IMAGES = 2000
STATS_SIZE = 64  # images are shrunk to this (shorter side) before their pixels are counted


class LabelledImages:
    """A labelled set: ``classes`` (names, sorted), ``labels`` (one int per item) and
    ``load(i) -> RGB PIL image`` (which may raise NotAnImage); ``name(i)`` for messages."""

    classes: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, i: int) -> Image.Image:
        raise NotImplementedError

    def name(self, i: int) -> str:
        return f"item {i}"


class ImageFolderSet(LabelledImages):
    """root/<class>/**/<image>: one sub-folder per class, images found recursively by content
    or extension (``retrieval.images.find_images``). Sub-folders without images are no class."""

    def __init__(self, root: str | os.PathLike, limit_per_class: int | None = None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: no such folder (expected one sub-folder per class)")
        self.root = root
        self.classes, self.paths, self.labels = [], [], []
        folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        for folder in folders:
            paths = list(find_images([folder]))[:limit_per_class]
            if not paths:
                continue
            self.paths += paths
            self.labels += [len(self.classes)] * len(paths)
            self.classes.append(folder.name)
        if not self.paths:
            raise DataError(f"{root}: no images found in its class sub-folders "
                            "(expected root/<class>/<image files>)")
        if len(self.classes) < 2:
            raise DataError(f"{root}: images of only one class ({self.classes[0]!r}); training "
                            "needs at least two class sub-folders")

    def load(self, i: int) -> Image.Image:
        return load_image(self.paths[i])

    def name(self, i: int) -> str:
        return str(self.paths[i])


class FashionMNISTSet(LabelledImages):
    """Fashion-MNIST's train or test split as RGB images (the grey channel three times),
    optionally the first ``limit_per_class`` images of each class."""

    def __init__(self, data_root: str | os.PathLike | None, train: bool,
                 limit_per_class: int | None = None) -> None:
        from .datasets import fashion_mnist

        ds = fashion_mnist(data_root, train=train)
        targets = ds.targets.numpy()
        keep = np.arange(len(targets))
        if limit_per_class is not None:
            keep = np.sort(np.concatenate([np.flatnonzero(targets == c)[:limit_per_class]
                                           for c in range(len(ds.classes))]))
        self.data = ds.data[torch.from_numpy(keep)]  # (N, 28, 28) uint8
        self.labels = targets[keep].tolist()
        self.classes = list(ds.classes)
        self.split = "train" if train else "test"

    def load(self, i: int) -> Image.Image:
        return Image.fromarray(self.data[i].numpy(), mode="L").convert("RGB")

    def name(self, i: int) -> str:
        return f"fashion-mnist {self.split} image {i}"


class TransformedSubset(Dataset):
    """``(transform(image), label, None)`` for the chosen items of a LabelledImages; an
    unreadable image gives ``(None, label, "path: reason")`` (``collate_skipping`` drops it)."""

    def __init__(self, source: LabelledImages, indices: Sequence[int], transform) -> None:
        self.source, self.indices, self.transform = source, list(indices), transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        i = self.indices[k]
        label = self.source.labels[i]
        try:
            return self.transform(self.source.load(i)), label, None
        except NotAnImage as e:
            return None, label, str(e)  # "path: reason"

    @property
    def labels(self) -> list[int]:
        return [self.source.labels[i] for i in self.indices]


def collate_skipping(samples: list) -> tuple[torch.Tensor | None, torch.Tensor, list]:
    """Batch ``(image tensor or None, target, error or None)`` samples, leaving out the images
    that could not be read, so that one bad file never stops a DataLoader.

    Returns (images (b, ...) or None when none was readable, their targets (b,) long, and
    [(target, error)] of the unreadable ones). A target is a class label in training and a
    position in the list of paths in extraction.
    """
    good = [(x, t) for x, t, _ in samples if x is not None]
    errors = [(t, e) for x, t, e in samples if x is None]
    targets = torch.tensor([t for _, t in good], dtype=torch.long)
    images = torch.stack([x for x, _ in good]) if good else None
    return images, targets, errors


def split_indices(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded split, stratified by class: about ``fraction`` of each class to validation
    (at least one item of every class with two or more items). Returns (train, val)."""
    if not 0 < fraction < 1:
        raise DataError(f"--val-split must be between 0 and 1, not {fraction}")
    g = torch.Generator().manual_seed(seed)
    labels_np = np.asarray(labels)
    train, val = [], []
    for c in np.unique(labels_np):
        items = np.flatnonzero(labels_np == c)
        items = items[torch.randperm(len(items), generator=g).numpy()]
        n_val = min(len(items) - 1, max(1, round(fraction * len(items))))
        val += items[:n_val].tolist()
        train += items[n_val:].tolist()
    return sorted(train), sorted(val)


def pixel_statistics(source: LabelledImages, indices: Sequence[int], seed: int,
                     max_images: int = STATS_MAX_IMAGES) -> dict:
    """Per-channel mean and std and the eigen-pairs of the RGB covariance (pixels in [0, 1])
    of up to ``max_images`` training images: section 4.1's mean subtraction and PCA lighting.

    Returns a dict with ``mean``, ``std``, ``eigval`` (descending) and ``eigvec`` (3x3, columns
    are eigenvectors), ready for ``Preprocess``; unreadable images are left out.
    """
    rng = np.random.default_rng(seed)
    chosen = rng.permutation(np.asarray(indices))[:max_images]
    pixels = []
    for i in chosen:
        try:
            img = source.load(int(i))
        except NotAnImage:
            continue
        if min(img.size) > STATS_SIZE:
            scale = STATS_SIZE / min(img.size)  # large photos: their colours, not every pixel
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
        pixels.append(np.asarray(img, dtype=np.float64).reshape(-1, 3) / 255.0)
    if not pixels:
        raise DataError("no readable training image to compute pixel statistics from")
    x = np.concatenate(pixels)  # (P, 3)
    mean, std = x.mean(0), x.std(0)
    eigval, eigvec = np.linalg.eigh(np.cov(x, rowvar=False))  # ascending
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = np.clip(eigval[order], 0, None), eigvec[:, order]
    return {"mean": tuple(float(v) for v in mean),
            "std": tuple(float(max(v, 1e-3)) for v in std),  # a constant channel: no 0 division
            "eigval": tuple(float(v) for v in eigval),
            "eigvec": tuple(tuple(float(v) for v in row) for row in eigvec)}
