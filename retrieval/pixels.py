"""The raw-pixel baseline of section 6.1: images compared by Euclidean distance of their pixels."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from .errors import NotAnImage
from .images import load_image

PIXEL_SIZE = 16  # each image becomes a 16x16 RGB square: 768 numbers


def pixel_vectors(paths: Sequence[str | os.PathLike], size: int = PIXEL_SIZE
                  ) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    """Decode, resize to ``size`` x ``size`` (aspect ignored) and flatten each image.

    Returns float32 (n_ok, 3*size*size) vectors in [0, 1], the positions of the paths that
    decoded, and (path, reason) for those that did not.
    """
    rows, ok, errors = [], [], []
    for i, path in enumerate(paths):
        try:
            img = load_image(path, draft_size=size)
        except NotAnImage as e:
            errors.append((str(path), e.reason))
            continue
        small = img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        rows.append(np.asarray(small, dtype=np.float32).reshape(-1) / 255.0)
        ok.append(i)
    xb = np.stack(rows) if rows else np.zeros((0, 3 * size * size), np.float32)
    return np.ascontiguousarray(xb, dtype=np.float32), ok, errors
