"""What indexes/ needs from the model side: a build embeds the files it indexes with it, a
searcher its queries (``retrieval.features.FeatureExtractor`` is one; so is the ONNX one)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np


class Extractor(Protocol):
    """A build's or a searcher's way to fc7 vectors (retrieval.features.FeatureExtractor)."""

    def identity(self) -> dict:
        """weights (source), sha256, layer, dim, transform, model: recorded in the manifest."""

    def embed(self, paths: Sequence[str]) -> Iterator[tuple[list[int], np.ndarray, list]]:
        """Per batch: positions in ``paths`` that decoded, their (b, dim) float32 vectors,
        and [(path, reason)] of those that did not."""
