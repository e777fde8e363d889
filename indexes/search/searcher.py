"""An index opened with the weights it was built with: image files in, nearest images out.

The one path by which `query`, `evaluate` and the demo turn images into neighbours, so that
an answer is the same whichever way it is asked. The model side comes in as an extractor
(``indexes.extractor.Extractor``: ``identity()`` and batched ``embed(paths)``) made by a loader the
caller passes; this module never imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from indexes.extractor import Extractor
from indexes.store import faiss_ops, gpu, manifest
from indexes.store.store import IndexStore, neighbours, open_for_reading

# (source, trusted) -> an extractor with those weights; trusted: (stamp, sha256) or None.
LoadExtractor = Callable[[str, "tuple[list[int], str] | None"], Extractor]
Neighbours = list[tuple[str, float]]  # (path, Euclidean distance), nearest first


def embed_all(extractor: Extractor, paths: Sequence[str]
              ) -> tuple[np.ndarray, list[int], list[tuple[str, str]]]:
    """``extractor.embed`` in one call: (float32 (n_ok, dim) vectors, positions in ``paths``
    of the images that decoded, [(path, reason)] of those that did not)."""
    chunks, positions, errors = [], [], []
    for pos, x, errs in extractor.embed(paths):
        chunks.append(x)
        positions += pos
        errors += errs
    xb = (np.concatenate(chunks) if chunks
          else np.zeros((0, extractor.identity()["dim"]), np.float32))
    return faiss_ops.as_float32(xb), positions, errors


class Searcher:
    """``store`` and the ``extractor`` of the weights its vectors were made with."""

    def __init__(self, store: IndexStore, extractor: Extractor) -> None:
        self.store, self.extractor = store, extractor

    @classmethod
    def open(cls, folder: str | os.PathLike, load: LoadExtractor) -> "Searcher":
        """Open a built index and load its weights with ``load``. Raises IndexCorrupt for a
        damaged index, WeightsError when its weights are gone, IndexMismatch when the file
        now holds other weights than those the index was built with."""
        store = open_for_reading(folder)
        try:
            extractor = load(*manifest.weights_ref(store.settings))
            manifest.check_identity(store.settings, extractor.identity())
        except BaseException:
            store.close()
            raise
        return cls(store, extractor)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Searcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def embed(self, paths: Sequence[str]):
        """``embed_all`` with the index's weights."""
        return embed_all(self.extractor, paths)

    def query(self, paths: Sequence[str], k: int, nprobe: int | None = None,
              max_distance: float | None = None
              ) -> tuple[list[tuple[str, Neighbours]], list[tuple[str, str]]]:
        """The ``k`` nearest indexed images of each image file (no farther than
        ``max_distance``), a batch at a time: ([(query path, neighbours)] of the images that
        decoded, [(path, reason)] of the rest)."""
        rows, failed = [], []
        paths = [str(p) for p in paths]
        if gpu.pays_for(len(paths)):
            self.store.use_gpu()
        for positions, xq, errors in self.extractor.embed(paths):
            failed += errors
            if len(positions):
                found = neighbours(self.store, xq, k, nprobe, max_distance)
                rows += [(paths[i], r) for i, r in zip(positions, found)]
        return rows, failed
